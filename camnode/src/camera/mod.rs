//! Picture sources (synthetic, webcam) and JPEG encoding.

use alloc::vec::Vec;

use crate::EncodingError;
use crate::encoder::{AlignedBlock, Component};
use crate::huffman::{CodingClass, HuffmanTable};
use crate::marker::{Marker, SOFType};
use crate::quantization::QuantizationTable;

/// Represents the pixel density of an image
///
/// For example, a 300 DPI image is represented by:
///
/// ```rust
/// # use jpeg_encoder::{PixelDensity, PixelDensityUnit};
/// let hdpi = PixelDensity::dpi(300);
/// assert_eq!(hdpi, PixelDensity {density: (300,300), unit: PixelDensityUnit::Inches})
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PixelDensity {
    /// A couple of values for (Xdensity, Ydensity)
    pub density: (u16, u16),
    /// The unit in which the density is measured
    pub unit: PixelDensityUnit,
}

impl PixelDensity {
    /// Creates the most common pixel density type:
    /// the horizontal and the vertical density are equal,
    /// and measured in pixels per inch.
    #[must_use]
    pub fn dpi(density: u16) -> Self {
        PixelDensity {
            density: (density, density),
            unit: PixelDensityUnit::Inches,
        }
    }
}

impl Default for PixelDensity {
    /// Returns a pixel density with a pixel aspect ratio of 1
    fn default() -> Self {
        PixelDensity {
            density: (1, 1),
            unit: PixelDensityUnit::PixelAspectRatio,
        }
    }
}

/// Represents a unit in which the density of an image is measured
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PixelDensityUnit {
    /// Represents the absence of a unit, the values indicate only a
    /// [pixel aspect ratio](https://en.wikipedia.org/wiki/Pixel_aspect_ratio)
    PixelAspectRatio,

    /// Pixels per inch (2.54 cm)
    Inches,

    /// Pixels per centimeter
    Centimeters,
}

/// Zig-zag sequence of quantized DCT coefficients
///
/// Figure A.6
pub static ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Bits in the bit buffer of [`JfifWriter`].
const BUFFER_SIZE: usize = 64;

/// The entropy-coded data and the headers are collected in a buffer of the writer's own and
/// handed to the [`JfifWrite`] in pieces of about this size (and at the end of the image), so
/// the bit writer neither calls through the trait nor checks for errors per 8 bytes.
const STAGING_FLUSH: usize = 32 * 1024;

/// Room kept free in the staging buffer for one flush of the bit buffer: 8 bytes, each
/// possibly followed by a stuffed zero byte.
const STAGING_SLACK: usize = 16;

pub trait JfifWrite {
    /// Writes the whole buffer. The behavior must be identical to std::io::Write::write_all
    /// # Errors
    ///
    /// Return an error if the data can't be written
    fn write_all(&mut self, buf: &[u8]) -> Result<(), EncodingError>;
}

#[cfg(not(feature = "std"))]
impl<W: JfifWrite + ?Sized> JfifWrite for &mut W {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), EncodingError> {
        (**self).write_all(buf)
    }
}

#[cfg(not(feature = "std"))]
impl JfifWrite for alloc::vec::Vec<u8> {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), EncodingError> {
        self.extend_from_slice(buf);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl<W: std::io::Write + ?Sized> JfifWrite for W {
    #[inline(always)]
    fn write_all(&mut self, buf: &[u8]) -> Result<(), EncodingError> {
        self.write_all(buf)?;
        Ok(())
    }
}

pub(crate) struct JfifWriter<W: JfifWrite> {
    w: W,
    /// Bytes not yet handed to `w` (see [`STAGING_FLUSH`]).
    out: Vec<u8>,
    bit_buffer: u64,
    free_bits: i8,
}

impl<W: JfifWrite> JfifWriter<W> {
    pub fn new(w: W) -> Self {
        JfifWriter {
            w,
            out: Vec::new(),
            bit_buffer: 0,
            free_bits: BUFFER_SIZE as i8,
        }
    }

    /// Hand everything collected so far to the underlying writer.
    pub fn flush(&mut self) -> Result<(), EncodingError> {
        if !self.out.is_empty() {
            self.w.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Flush once the staging buffer has grown past [`STAGING_FLUSH`].
    #[inline(always)]
    fn flush_if_full(&mut self) -> Result<(), EncodingError> {
        if self.out.len() >= STAGING_FLUSH {
            self.flush()
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    pub fn write(&mut self, buf: &[u8]) -> Result<(), EncodingError> {
        self.out.extend_from_slice(buf);
        self.flush_if_full()
    }

    #[inline(always)]
    pub fn write_u8(&mut self, value: u8) -> Result<(), EncodingError> {
        self.write(&[value])
    }

    #[inline(always)]
    pub fn write_u16(&mut self, value: u16) -> Result<(), EncodingError> {
        self.write(&value.to_be_bytes())
    }

    pub fn finalize_bit_buffer(&mut self) -> Result<(), EncodingError> {
        self.write_bits(0x7F, 7);
        self.flush_bit_buffer();
        self.bit_buffer = 0;
        self.free_bits = BUFFER_SIZE as i8;

        self.flush_if_full()
    }

    fn flush_bit_buffer(&mut self) {
        while self.free_bits <= (BUFFER_SIZE as i8 - 8) {
            let value = (self.bit_buffer >> (BUFFER_SIZE as i8 - 8 - self.free_bits)) as u8;
            self.out.push(value);
            if value == 0xFF {
                self.out.push(0x00);
            }
            self.free_bits += 8;
        }
    }

    /// Append the 64 bits of `bits`, each 0xFF byte followed by a stuffed 0x00.
    #[inline(always)]
    fn emit_bit_buffer(&mut self, bits: u64) {
        if self.out.capacity() - self.out.len() < STAGING_SLACK {
            self.out.reserve(STAGING_FLUSH + 4 * STAGING_SLACK);
        }
        let bytes = bits.to_be_bytes();
        // Any 0xFF byte? (Exact for 0xFF; a byte 0xFE..0x7F next to a 0xFF may set a false
        // alarm through the carry, which only takes the slow path.)
        #[allow(overflowing_literals)]
        let maybe_ff =
            bits & 0x8080_8080_8080_8080 & !bits.wrapping_add(0x0101_0101_0101_0101) != 0;
        if maybe_ff {
            for b in bytes {
                self.out.push(b);
                if b == 0xFF {
                    self.out.push(0x00);
                }
            }
        } else {
            self.push_8(bytes);
        }
    }

    /// Append 8 bytes (spare capacity for them ensured by the caller).
    #[cfg(feature = "simd")]
    #[inline(always)]
    fn push_8(&mut self, bytes: [u8; 8]) {
        debug_assert!(self.out.capacity() - self.out.len() >= 8);
        let len = self.out.len();
        // SAFETY: the caller (emit_bit_buffer) ensured at least STAGING_SLACK (16) >= 8 bytes
        // of spare capacity; the 8 bytes are initialised before the length covers them.
        unsafe {
            core::ptr::write_unaligned(self.out.as_mut_ptr().add(len) as *mut [u8; 8], bytes);
            self.out.set_len(len + 8);
        }
    }

    /// Append 8 bytes (without the `simd` feature the crate has no unsafe code).
    #[cfg(not(feature = "simd"))]
    #[inline(always)]
    fn push_8(&mut self, bytes: [u8; 8]) {
        self.out.extend_from_slice(&bytes);
    }

    #[inline(always)]
    pub fn write_bits(&mut self, value: u32, size: u8) {
        let size = size as i8;
        let value = value as u64;

        let free_bits = self.free_bits - size;

        if free_bits < 0 {
            let full = (self.bit_buffer << (size + free_bits)) | (value >> -free_bits);
            self.emit_bit_buffer(full);
            self.bit_buffer = value;
            self.free_bits = free_bits + BUFFER_SIZE as i8;
        } else {
            self.free_bits = free_bits;
            self.bit_buffer = (self.bit_buffer << size) | value;
        }
    }

    pub fn write_marker(&mut self, marker: Marker) -> Result<(), EncodingError> {
        self.write(&[0xFF, marker.into()])
    }

    pub fn write_segment(&mut self, marker: Marker, data: &[u8]) -> Result<(), EncodingError> {
        self.write_marker(marker)?;
        self.write_u16(data.len() as u16 + 2)?;
        self.write(data)?;

        Ok(())
    }

    pub fn write_header(&mut self, density: &PixelDensity) -> Result<(), EncodingError> {
        self.write_marker(Marker::APP(0))?;
        self.write_u16(16)?;

        self.write(b"JFIF\0")?;
        self.write(&[0x01, 0x02])?;

        match density.unit {
            PixelDensityUnit::PixelAspectRatio => {
                self.write_u8(0x00)?;
            }
            PixelDensityUnit::Inches => {
                self.write_u8(0x01)?;
            }
            PixelDensityUnit::Centimeters => {
                self.write_u8(0x02)?;
            }
        }
        let (x, y) = density.density;
        self.write_u16(x)?;
        self.write_u16(y)?;

        self.write(&[0x00, 0x00])
    }

    /// Append huffman table segment
    ///
    /// - `class`: 0 for DC or 1 for AC
    /// - `dest`: 0 for luma or 1 for chroma tables
    ///
    /// Layout:
    /// ```txt
    /// |--------|---------------|--------------------------|--------------------|--------|
    /// | 0xFFC4 | 16 bit length | 4 bit class / 4 bit dest |  16 byte num codes | values |
    /// |--------|---------------|--------------------------|--------------------|--------|
    /// ```
    ///
    pub fn write_huffman_segment(
        &mut self,
        class: CodingClass,
        destination: u8,
        table: &HuffmanTable,
    ) -> Result<(), EncodingError> {
        assert!(destination < 4, "Bad destination: {}", destination);

        self.write_marker(Marker::DHT)?;
        self.write_u16(2 + 1 + 16 + table.values().len() as u16)?;

        self.write_u8(((class as u8) << 4) | destination)?;
        self.write(table.length())?;
        self.write(table.values())?;

        Ok(())
    }

    /// Append a quantization table
    ///
    /// - `precision`: 0 which means 1 byte per value.
    /// - `dest`: 0 for luma or 1 for chroma tables
    ///
    /// Layout:
    /// ```txt
    /// |--------|---------------|------------------------------|--------|--------|-----|--------|
    /// | 0xFFDB | 16 bit length | 4 bit precision / 4 bit dest | V(0,0) | V(0,1) | ... | V(7,7) |
    /// |--------|---------------|------------------------------|--------|--------|-----|--------|
    /// ```
    ///
    pub fn write_quantization_segment(
        &mut self,
        destination: u8,
        table: &QuantizationTable,
    ) -> Result<(), EncodingError> {
        assert!(destination < 4, "Bad destination: {}", destination);

        self.write_marker(Marker::DQT)?;
        self.write_u16(2 + 1 + 64)?;

        self.write_u8(destination)?;

        for &v in ZIGZAG.iter() {
            self.write_u8(table.get(v as usize))?;
        }

        Ok(())
    }

    pub fn write_dri(&mut self, restart_interval: u16) -> Result<(), EncodingError> {
        self.write_marker(Marker::DRI)?;
        self.write_u16(4)?;
        self.write_u16(restart_interval)
    }

    #[inline(always)]
    pub fn huffman_encode(&mut self, val: u8, table: &HuffmanTable) {
        let &(size, code) = table.get_for_value(val);
        self.write_bits(code as u32, size)
    }

    #[inline(always)]
    pub fn huffman_encode_value(&mut self, size: u8, symbol: u8, value: u16, table: &HuffmanTable) {
        let &(num_bits, code) = table.get_for_value(symbol);

        let mut temp = value as u32;
        temp |= (code as u32) << size;
        let size = size + num_bits;

        self.write_bits(temp, size)
    }

    pub fn write_block(
        &mut self,
        block: &AlignedBlock,
        prev_dc: i16,
        dc_table: &HuffmanTable,
        ac_table: &HuffmanTable,
    ) -> Result<(), EncodingError> {
        self.encode_dc(block.data[0], prev_dc, dc_table);
        self.encode_ac(block, 1, 64, ac_table);
        self.flush_if_full()
    }

    pub fn write_dc(
        &mut self,
        value: i16,
        prev_dc: i16,
        dc_table: &HuffmanTable,
    ) -> Result<(), EncodingError> {
        self.encode_dc(value, prev_dc, dc_table);
        self.flush_if_full()
    }

    #[inline(always)]
    fn encode_dc(&mut self, value: i16, prev_dc: i16, dc_table: &HuffmanTable) {
        let diff = value - prev_dc;
        let (size, value) = get_code(diff);

        self.huffman_encode_value(size, size, value, dc_table);
    }

    pub fn write_ac_block(
        &mut self,
        block: &AlignedBlock,
        start: usize,
        end: usize,
        ac_table: &HuffmanTable,
    ) -> Result<(), EncodingError> {
        self.encode_ac(block, start, end, ac_table);
        self.flush_if_full()
    }

    /// The AC coefficients `start..end` (zig-zag order): the nonzero ones are found with a
    /// bitmask instead of a branch per coefficient.
    #[inline(always)]
    fn encode_ac(
        &mut self,
        block: &AlignedBlock,
        start: usize,
        end: usize,
        ac_table: &HuffmanTable,
    ) {
        let mut mask = nonzero_mask(block);
        let range = if end == 64 { !0u64 } else { (1u64 << end) - 1 };
        mask &= range & !((1u64 << start) - 1);
        let mut next = start as u32;
        while mask != 0 {
            let i = mask.trailing_zeros();
            mask &= mask - 1;
            let mut zero_run = i - next;
            while zero_run > 15 {
                self.huffman_encode(0xF0, ac_table);
                zero_run -= 16;
            }
            let (size, value) = get_code(block.data[i as usize]);
            let symbol = ((zero_run as u8) << 4) | size;
            self.huffman_encode_value(size, symbol, value, ac_table);
            next = i + 1;
        }
        if (next as usize) < end {
            self.huffman_encode(0x00, ac_table);
        }
    }

    pub fn write_frame_header(
        &mut self,
        width: u16,
        height: u16,
        components: &[Component],
        progressive: bool,
    ) -> Result<(), EncodingError> {
        if progressive {
            self.write_marker(Marker::SOF(SOFType::ProgressiveDCT))?;
        } else {
            self.write_marker(Marker::SOF(SOFType::BaselineDCT))?;
        }

        self.write_u16(2 + 1 + 2 + 2 + 1 + (components.len() as u16) * 3)?;

        // Precision
        self.write_u8(8)?;

        self.write_u16(height)?;
        self.write_u16(width)?;

        self.write_u8(components.len() as u8)?;

        for component in components.iter() {
            self.write_u8(component.id)?;
            self.write_u8(
                (component.horizontal_sampling_factor << 4) | component.vertical_sampling_factor,
            )?;
            self.write_u8(component.quantization_table)?;
        }

        Ok(())
    }

    pub fn write_scan_header(
        &mut self,
        components: &[&Component],
        spectral: Option<(u8, u8)>,
    ) -> Result<(), EncodingError> {
        self.write_marker(Marker::SOS)?;

        self.write_u16(2 + 1 + (components.len() as u16) * 2 + 3)?;

        self.write_u8(components.len() as u8)?;

        for component in components.iter() {
            self.write_u8(component.id)?;
            self.write_u8((component.dc_huffman_table << 4) | component.ac_huffman_table)?;
        }

        let (spectral_start, spectral_end) = spectral.unwrap_or((0, 63));

        // Start of spectral or predictor selection
        self.write_u8(spectral_start)?;

        // End of spectral selection
        self.write_u8(spectral_end)?;

        // Successive approximation bit position high and low
        self.write_u8(0)?;

        Ok(())
    }
}

/// Bit `i` set where coefficient `i` is not zero.
#[inline(always)]
fn nonzero_mask(block: &AlignedBlock) -> u64 {
    #[cfg(all(feature = "simd", target_arch = "x86_64"))]
    {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16,
            _mm_setzero_si128,
        };
        let p = block.data.as_ptr() as *const __m128i;
        let mut zero = 0u64;
        for k in 0..4 {
            // SAFETY: SSE2 is part of x86-64; the 8 loads of 16 bytes (8 i16 each) stay within
            // the 64 coefficients. Saturating packing keeps a nonzero i16 nonzero.
            let bits = unsafe {
                let lo = _mm_loadu_si128(p.add(2 * k));
                let hi = _mm_loadu_si128(p.add(2 * k + 1));
                let packed = _mm_packs_epi16(lo, hi);
                _mm_movemask_epi8(_mm_cmpeq_epi8(packed, _mm_setzero_si128())) as u32 as u64
            };
            zero |= bits << (16 * k);
        }
        !zero
    }
    #[cfg(not(all(feature = "simd", target_arch = "x86_64")))]
    {
        let mut mask = 0u64;
        for (i, &v) in block.data.iter().enumerate() {
            mask |= ((v != 0) as u64) << i;
        }
        mask
    }
}

#[inline]
pub(crate) fn get_code(value: i16) -> (u8, u16) {
    let temp = value - (value.is_negative() as i16);
    let temp2 = value.abs();

    /*
     * Doing this instead of 16 - temp2.leading_zeros()
     * Gives the compiler the information that leadings_zeros
     * is always called on a non zero value, which removes a branch on x86
     */
    let num_bits = 15 - (temp2 << 1 | 1).leading_zeros() as u16;

    let coefficient = temp & ((1 << num_bits as usize) - 1);

    (num_bits as u8, coefficient as u16)
}

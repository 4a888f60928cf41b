mod fdct;
mod ycbcr;

use crate::encoder::{AlignedBlock, Operations};
use crate::quantization::QuantizationTable;
pub use fdct::fdct_avx2;
pub use ycbcr::*;

pub(crate) struct AVX2Operations;

impl Operations for AVX2Operations {
    #[inline(always)]
    fn get_block(
        data: &[u8],
        start_x: usize,
        start_y: usize,
        col_stride: usize,
        row_stride: usize,
        width: usize,
    ) -> AlignedBlock {
        if col_stride <= 2 {
            // SAFETY: AVX2Operations is only chosen after `is_x86_feature_detected!("avx2")`
            // (Encoder::encode_image).
            unsafe { get_block_avx2(data, start_x, start_y, col_stride, row_stride, width) }
        } else {
            crate::encoder::get_block(data, start_x, start_y, col_stride, row_stride, width)
        }
    }

    #[inline(always)]
    fn fdct(data: &mut AlignedBlock) {
        fdct_avx2(data);
    }

    #[inline(always)]
    fn quantize_block(block: &AlignedBlock, q_block: &mut AlignedBlock, table: &QuantizationTable) {
        // SAFETY: AVX2Operations is only chosen after `is_x86_feature_detected!("avx2")`
        // (Encoder::encode_image).
        unsafe { quantize_avx2(block, q_block, table) }
    }
}

/// `get_block` for a column stride of 1 or 2 (every column, or the even ones: subsampled
/// chroma), two rows per 256-bit store, so that the DCT's 256-bit loads of the block are
/// forwarded from stores of the same size.
#[target_feature(enable = "avx2")]
unsafe fn get_block_avx2(
    data: &[u8],
    start_x: usize,
    start_y: usize,
    col_stride: usize,
    row_stride: usize,
    width: usize,
) -> AlignedBlock {
    #[cfg(target_arch = "x86")]
    use core::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    let mut block = AlignedBlock::default();
    let row = |y: usize, len: usize| &data[(start_y + y * row_stride) * width + start_x..][..len];
    for pair in 0..4 {
        let (y0, y1) = (2 * pair, 2 * pair + 1);
        // SAFETY: the loads read exactly the slices taken (bounds-checked) above them; the
        // store writes 16 i16 (32 bytes) at 16 * pair within the 64 coefficients.
        unsafe {
            let bytes = if col_stride == 1 {
                let (a, b) = (row(y0, 8), row(y1, 8));
                _mm_unpacklo_epi64(
                    _mm_loadl_epi64(a.as_ptr() as *const __m128i),
                    _mm_loadl_epi64(b.as_ptr() as *const __m128i),
                )
            } else {
                let (a, b) = (row(y0, 16), row(y1, 16));
                let even = _mm_set1_epi16(0x00FF);
                _mm_packus_epi16(
                    _mm_and_si128(_mm_loadu_si128(a.as_ptr() as *const __m128i), even),
                    _mm_and_si128(_mm_loadu_si128(b.as_ptr() as *const __m128i), even),
                )
            };
            let v = _mm256_sub_epi16(_mm256_cvtepu8_epi16(bytes), _mm256_set1_epi16(128));
            _mm256_store_si256(block.data.as_mut_ptr().add(16 * pair) as *mut __m256i, v);
        }
    }
    block
}

/// The zig-zag order (as `crate::writer::ZIGZAG`), usable in constants.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// `ZIGZAG_SHUFFLE[g][r]`: the byte shuffle that moves the coefficients of natural row `r`
/// (8 x i16) to their places in zig-zag group `g` (output positions 8g..8g+8), zero elsewhere.
const ZIGZAG_SHUFFLE: [[[u8; 16]; 8]; 8] = {
    let mut m = [[[0x80u8; 16]; 8]; 8];
    let mut i = 0;
    while i < 64 {
        let z = ZIGZAG[i] as usize;
        let (g, j, r, c) = (i / 8, i % 8, z / 8, z % 8);
        m[g][r][2 * j] = 2 * c as u8;
        m[g][r][2 * j + 1] = 2 * c as u8 + 1;
        i += 1;
    }
    m
};

/// Bit `r` of `ZIGZAG_ROWS[g]`: natural row `r` has a coefficient in zig-zag group `g`.
const ZIGZAG_ROWS: [u8; 8] = {
    let mut rows = [0u8; 8];
    let mut i = 0;
    while i < 64 {
        rows[i / 8] |= 1 << (ZIGZAG[i] / 8);
        i += 1;
    }
    rows
};

/// Quantise like `QuantizationTable::quantize` (the same reciprocals, corrections and rounding)
/// eight coefficients at a time, then put them in zig-zag order with byte shuffles.
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(
    block: &AlignedBlock,
    q_block: &mut AlignedBlock,
    table: &QuantizationTable,
) {
    #[cfg(target_arch = "x86")]
    use core::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    let mut rows = [_mm_setzero_si128(); 8];
    for (i, row) in rows.iter_mut().enumerate() {
        // SAFETY: rows of 8 i16 (16 bytes) and 8 i32 (32 bytes) within the 64-entry arrays.
        unsafe {
            let v = _mm256_cvtepi16_epi32(_mm_loadu_si128(
                block.data.as_ptr().add(i * 8) as *const __m128i
            ));
            let a = _mm256_abs_epi32(v);
            let r = _mm256_loadu_si256(table.reciprocals.as_ptr().add(i * 8) as *const __m256i);
            let c = _mm256_loadu_si256(table.corrections.as_ptr().add(i * 8) as *const __m256i);
            let p = _mm256_srli_epi32(_mm256_mullo_epi32(_mm256_add_epi32(a, c), r), 15);
            let s = _mm256_sign_epi32(p, v);
            *row = _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        }
    }
    for g in 0..8 {
        let mut out = _mm_setzero_si128();
        for (r, row) in rows.iter().enumerate() {
            if ZIGZAG_ROWS[g] & (1 << r) != 0 {
                // SAFETY: a 16-byte load from a [u8; 16].
                let shuffle =
                    unsafe { _mm_loadu_si128(ZIGZAG_SHUFFLE[g][r].as_ptr() as *const __m128i) };
                out = _mm_or_si128(out, _mm_shuffle_epi8(*row, shuffle));
            }
        }
        // SAFETY: 8 i16 (16 bytes) at 8g, within the 64 coefficients.
        unsafe { _mm_storeu_si128(q_block.data.as_mut_ptr().add(g * 8) as *mut __m128i, out) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zigzag_matches_the_writers() {
        assert_eq!(super::ZIGZAG, crate::writer::ZIGZAG);
    }
}

//! Small, valid media files made in code, served by the simulator's
//! `/memory/{ctx}/{id}/audio` and `/image` routes: a WAV of a short tone and
//! a PNG of a few pixels, both varying with the memory id so that different
//! memories have different bytes.

/// A 0.1 s, 8 kHz, 8-bit mono WAV whose tone depends on `seed`.
pub fn wav(seed: u64) -> Vec<u8> {
    let rate: u32 = 8000;
    let samples: u32 = rate / 10;
    let period = 8 + (seed % 32) as u32;
    let mut out = Vec::with_capacity(44 + samples as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes()); // byte rate
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&samples.to_le_bytes());
    for i in 0..samples {
        // A square wave around the 8-bit midpoint.
        out.push(if (i / (period / 2)).is_multiple_of(2) { 160 } else { 96 });
    }
    out
}

/// A 4x4 RGB PNG (stored, uncompressed deflate) whose colour depends on `seed`.
pub fn png(seed: u64) -> Vec<u8> {
    let (w, h) = (4u32, 4u32);
    let colour = [(seed & 0xff) as u8, ((seed >> 8) & 0xff) as u8, ((seed >> 16) & 0xff) as u8];
    // Each row: filter byte 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0).chain((0..w).flat_map(|_| colour)).collect();
    let raw: Vec<u8> = (0..h).flat_map(|_| row.iter().copied()).collect();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream with one stored (uncompressed) deflate block (data < 64 KiB).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082, "the CRC every PNG ends with");
    }

    #[test]
    fn files_have_their_signatures_and_sizes() {
        let w = wav(7);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..12], b"WAVE");
        assert_eq!(u32::from_le_bytes([w[4], w[5], w[6], w[7]]) as usize, w.len() - 8);
        let p = png(7);
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert!(p.ends_with(&[0xae, 0x42, 0x60, 0x82]));
        assert_ne!(png(1), png(2));
        assert_ne!(wav(1), wav(2));
    }
}

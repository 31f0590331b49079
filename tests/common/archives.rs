//! Hand-built hostile archives: a raw deflate stream of `n` zero bytes (fixed
//! Huffman, 258-byte back-references: about 160:1, written without ever
//! holding the `n` bytes), wrapped as gzip or as a zip entry; and zips with
//! arbitrary (e.g. `../`) entry names.

/// CRC-32 (IEEE) of `len` zero bytes, as gzip and zip trailers need it.
pub fn crc32_of_zeros(len: u64) -> u32 {
    let table = crc_table();
    let mut crc = 0xFFFF_FFFFu32;
    for _ in 0..len {
        crc = table[(crc & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// CRC-32 (IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let table = crc_table();
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    table
}

/// An LSB-first bit writer, as deflate packs its stream.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits {
    fn new() -> Self {
        Bits {
            out: Vec::new(),
            acc: 0,
            count: 0,
        }
    }

    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += bits;
        while self.count >= 8 {
            self.out.push((self.acc & 0xFF) as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// Huffman codes are defined MSB-first.
    fn put_code(&mut self, code: u32, bits: u32) {
        let reversed = code.reverse_bits() >> (32 - bits);
        self.put(reversed, bits);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push((self.acc & 0xFF) as u8);
        }
        self.out
    }
}

/// A raw deflate stream decoding to `len` zero bytes.
pub fn deflate_zeros(len: u64) -> Vec<u8> {
    let mut bits = Bits::new();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    let literal_zero = |bits: &mut Bits| bits.put_code(0x30, 8);
    let mut left = len;
    if left > 0 {
        literal_zero(&mut bits);
        left -= 1;
    }
    while left >= 258 {
        bits.put_code(0xC5, 8); // length code 285 = 258 bytes
        bits.put_code(0, 5); // distance code 0 = 1 byte back
        left -= 258;
    }
    for _ in 0..left {
        literal_zero(&mut bits);
    }
    bits.put_code(0, 7); // end of block
    bits.finish()
}

/// A gzip member decoding to `len` zero bytes.
pub fn gzip_zeros(len: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(deflate_zeros(len));
    out.extend(crc32_of_zeros(len).to_le_bytes());
    out.extend(((len & 0xFFFF_FFFF) as u32).to_le_bytes());
    out
}

/// One entry of a hand-built zip.
pub struct ZipEntry {
    /// The name as stored (not sanitised: that is the point).
    pub name: String,
    /// 0 = stored, 8 = deflated.
    pub method: u16,
    /// The bytes as stored in the archive.
    pub data: Vec<u8>,
    /// CRC-32 of the uncompressed content.
    pub crc: u32,
    /// The uncompressed size the headers declare (may lie).
    pub declared_size: u32,
}

impl ZipEntry {
    /// A stored (uncompressed) entry.
    pub fn stored(name: &str, content: &[u8]) -> Self {
        ZipEntry {
            name: name.to_string(),
            method: 0,
            data: content.to_vec(),
            crc: crc32(content),
            declared_size: content.len() as u32,
        }
    }

    /// A deflated entry of `len` zero bytes that declares `declared_size`.
    pub fn zeros(name: &str, len: u64, declared_size: u32) -> Self {
        ZipEntry {
            name: name.to_string(),
            method: 8,
            data: deflate_zeros(len),
            crc: crc32_of_zeros(len),
            declared_size,
        }
    }
}

/// A zip archive of `entries` (no zip64, no extra fields).
pub fn zip(entries: &[ZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let fixed = |buf: &mut Vec<u8>| {
            buf.extend(20u16.to_le_bytes()); // version needed
            buf.extend(0u16.to_le_bytes()); // flags
            buf.extend(e.method.to_le_bytes());
            buf.extend(0u16.to_le_bytes()); // time
            buf.extend(0x21u16.to_le_bytes()); // date 1980-01-01
            buf.extend(e.crc.to_le_bytes());
            buf.extend((e.data.len() as u32).to_le_bytes());
            buf.extend(e.declared_size.to_le_bytes());
            buf.extend((e.name.len() as u16).to_le_bytes());
            buf.extend(0u16.to_le_bytes()); // extra length
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        fixed(&mut out);
        out.extend(e.name.as_bytes());
        out.extend(&e.data);

        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        fixed(&mut central);
        central.extend(0u16.to_le_bytes()); // comment length
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(e.name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(central_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

//! A minimal ZIP writer for the simulated Alipay bill: deflated entries whose names are raw
//! bytes (Alipay's are GBK, without the UTF-8 flag), which general zip writers do not emit.
//! Layout per PKWARE APPNOTE: a local header and data per entry, the central directory, the
//! end record. No ZIP64: bills are small.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::Compression;

/// One file of the archive: its name as stored (raw bytes) and its contents.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

/// MS-DOS date and time fields (local time of the archive's writer).
fn dos_time(t: time::PrimitiveDateTime) -> (u16, u16) {
    let time =
        (u16::from(t.hour()) << 11) | (u16::from(t.minute()) << 5) | u16::from(t.second() / 2);
    let year = u16::try_from(t.year() - 1980).unwrap_or(0).min(127);
    let date = (year << 9) | (u16::from(u8::from(t.month())) << 5) | u16::from(t.day());
    (time, date)
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn small<T: TryFrom<usize>>(n: usize) -> std::io::Result<T> {
    T::try_from(n).map_err(|_| std::io::Error::other("zip entry too large"))
}

/// The archive of `entries`, deflated, stamped `modified`.
pub fn write_zip(
    entries: &[ZipEntry],
    modified: time::PrimitiveDateTime,
) -> std::io::Result<Vec<u8>> {
    let (time, date) = dos_time(modified);
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&e.data)?;
        let packed = enc.finish()?;
        let crc = crc32fast::hash(&e.data);
        let offset: u32 = small(out.len())?;
        let (csize, usize_): (u32, u32) = (small(packed.len())?, small(e.data.len())?);
        let name_len: u16 = small(e.name.len())?;
        // Local file header.
        u32le(&mut out, 0x0403_4b50);
        for v in [20, 0, 8, time, date] {
            u16le(&mut out, v);
        }
        for v in [crc, csize, usize_] {
            u32le(&mut out, v);
        }
        u16le(&mut out, name_len);
        u16le(&mut out, 0);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&packed);
        // Its central directory record.
        u32le(&mut central, 0x0201_4b50);
        for v in [20, 20, 0, 8, time, date] {
            u16le(&mut central, v);
        }
        for v in [crc, csize, usize_] {
            u32le(&mut central, v);
        }
        for v in [name_len, 0, 0, 0, 0] {
            u16le(&mut central, v);
        }
        u32le(&mut central, 0);
        u32le(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let cd_offset: u32 = small(out.len())?;
    let cd_size: u32 = small(central.len())?;
    let count: u16 = small(entries.len())?;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    for v in [0, 0, count, count] {
        u16le(&mut out, v);
    }
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_end_record_are_where_the_format_says() {
        let t = time::macros::datetime!(2024-01-02 03:04:06);
        let z = write_zip(
            &[ZipEntry {
                name: b"a.csv".to_vec(),
                data: b"hello hello hello".to_vec(),
            }],
            t,
        )
        .unwrap();
        assert_eq!(&z[..4], &[0x50, 0x4b, 0x03, 0x04]);
        // Flags: no UTF-8 bit; method 8 (deflate).
        assert_eq!(&z[6..10], &[0, 0, 8, 0]);
        assert_eq!(&z[z.len() - 22..z.len() - 18], &[0x50, 0x4b, 0x05, 0x06]);
        assert_eq!(
            dos_time(t),
            ((3 << 11) | (4 << 5) | 3, (44 << 9) | (1 << 5) | 2)
        );
    }
}

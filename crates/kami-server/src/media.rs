//! Product pictures: an uploaded file decoded under limits (PNG, JPEG, WebP or GIF only;
//! dimensions and memory capped before any pixel is decoded), turned upright, resized to fit
//! [`FULL_SIDE`] and [`THUMB_SIDE`], re-encoded (JPEG, or PNG when it has transparency: no
//! EXIF or other metadata survives, so no location leaks), and kept under its content's
//! SHA-256 in the media directory (`<server.data_dir>/media`), served at `/media/<name>`.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The largest upload accepted, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// The largest picture accepted, in pixels per side.
pub const MAX_INPUT_SIDE: u32 = 8192;
/// Memory one decoded picture may take.
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;
/// The product page's picture fits in this square.
pub const FULL_SIDE: u32 = 800;
/// The catalogue's thumbnail fits in this square.
pub const THUMB_SIDE: u32 = 400;
const JPEG_QUALITY: u8 = 85;

/// Why a file is not taken as a picture. The messages are for the seller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the image is larger than {} MB", MAX_UPLOAD_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the file is empty")]
    Empty,
    #[error("the file is not an image kami reads: upload a PNG, JPEG, WebP or GIF picture")]
    NotAnImage,
    #[error("{0} pictures are not accepted: upload a PNG, JPEG, WebP or GIF picture")]
    Unsupported(String),
    #[error("the image is {width}×{height} pixels; at most {MAX_INPUT_SIDE}×{MAX_INPUT_SIDE} are accepted")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image could not be read: {0}")]
    Damaged(String),
}

/// How a stored picture is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    Jpg,
    Png,
}

impl Ext {
    pub fn as_str(self) -> &'static str {
        match self {
            Ext::Jpg => "jpg",
            Ext::Png => "png",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Ext::Jpg => "image/jpeg",
            Ext::Png => "image/png",
        }
    }
}

/// A stored picture's file name, `<64 lowercase hex digits>.<jpg|png>`, parsed strictly:
/// nothing else (no path, no dot-dot, no other extension) names a media file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaName {
    name: String,
    ext: Ext,
}

impl MediaName {
    pub fn parse(s: &str) -> Option<MediaName> {
        let (hash, ext) = s.split_once('.')?;
        let ext = match ext {
            "jpg" => Ext::Jpg,
            "png" => Ext::Png,
            _ => return None,
        };
        let hex = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| MediaName {
            name: s.to_owned(),
            ext,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.name
    }
    pub fn content_type(&self) -> &'static str {
        self.ext.content_type()
    }
}

/// One encoded size of a picture.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub ext: Ext,
    pub width: u32,
    pub height: u32,
}

impl Encoded {
    /// Its content-addressed name.
    pub fn name(&self) -> MediaName {
        let hash = hex::encode(digest::digest(&digest::SHA256, &self.bytes).as_ref());
        MediaName {
            name: format!("{hash}.{}", self.ext.as_str()),
            ext: self.ext,
        }
    }
}

/// An upload, ready to store: the product page's size and the catalogue's thumbnail.
#[derive(Debug, Clone)]
pub struct Processed {
    pub full: Encoded,
    pub thumb: Encoded,
}

/// Decode `bytes` (PNG, JPEG, WebP or GIF: the first frame), turn it upright, resize and
/// re-encode. CPU-bound: run it off the async threads.
pub fn process(bytes: &[u8]) -> Result<Processed, MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::Empty);
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(MediaError::TooLarge);
    }
    let image = decode(bytes)?;
    let full = fit(&image, FULL_SIDE);
    let thumb = fit(&full, THUMB_SIDE);
    Ok(Processed {
        full: encode(&full)?,
        thumb: encode(&thumb)?,
    })
}

fn damaged(e: image::ImageError) -> MediaError {
    MediaError::Damaged(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, MediaError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| MediaError::NotAnImage)?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif)) => {
            f
        }
        Some(other) => return Err(MediaError::Unsupported(format!("{other:?}").to_uppercase())),
        None => return Err(MediaError::NotAnImage),
    };
    // The header alone first: the dimensions are checked before any pixel is decoded (a
    // 100000×100000 claim costs nothing).
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(damaged)?;
    if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
        return Err(MediaError::TooManyPixels { width, height });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    // The limits hold the decoder to what was checked (and its memory to a bound).
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => MediaError::TooManyPixels { width, height },
        other => damaged(other),
    })?;
    if decoder.dimensions() != (width, height) || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(MediaError::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(MediaError::Damaged("it has no pixels".into()));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(damaged)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// `image` fitting in a `side`×`side` square, never enlarged.
fn fit(image: &DynamicImage, side: u32) -> DynamicImage {
    if image.width() <= side && image.height() <= side {
        return image.clone();
    }
    // A fast box reduction first when the picture is much larger (a phone photo), then a
    // good filter for the last step.
    let big = side.saturating_mul(2);
    if image.width() > big.saturating_mul(2) || image.height() > big.saturating_mul(2) {
        return image
            .thumbnail(big, big)
            .resize(side, side, FilterType::Lanczos3);
    }
    image.resize(side, side, FilterType::Lanczos3)
}

fn encode(image: &DynamicImage) -> Result<Encoded, MediaError> {
    let (width, height) = (image.width(), image.height());
    let transparent = image.color().has_alpha() && image.to_rgba8().pixels().any(|p| p.0[3] < 255);
    let mut bytes = Vec::new();
    let ext = if transparent {
        image
            .to_rgba8()
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(damaged)?;
        Ext::Png
    } else {
        let rgb = image.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .encode_image(&rgb)
            .map_err(damaged)?;
        Ext::Jpg
    };
    Ok(Encoded {
        bytes,
        ext,
        width,
        height,
    })
}

/// The media directory: content-addressed files, written whole under a temporary name and
/// renamed into place, so a reader never sees half a picture.
#[derive(Debug, Clone)]
pub struct MediaDir {
    dir: PathBuf,
}

impl MediaDir {
    pub fn new(dir: impl Into<PathBuf>) -> MediaDir {
        MediaDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Store `e` under its name (already there: nothing to do); returns the name.
    pub fn put(&self, e: &Encoded) -> std::io::Result<MediaName> {
        let name = e.name();
        let path = self.dir.join(name.as_str());
        if path.exists() {
            return Ok(name);
        }
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(
            ".{}.{:016x}.tmp",
            name.as_str(),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&e.bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map(|()| name)
    }

    /// The file's bytes; `None` when there is no such file.
    pub async fn read(&self, name: &MediaName) -> std::io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.dir.join(name.as_str())).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove a file no product uses any more (gone already: fine).
    pub fn remove(&self, name: &MediaName) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join(name.as_str())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, alpha: u8) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, alpha])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    /// A PNG whose header claims `w`×`h` (with a valid CRC) and whose data is a few bytes.
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&ihdr);
        out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // A few bytes of pixel data (an empty zlib stream): the claim is all there is.
        let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
        out.extend_from_slice(&8u32.to_be_bytes());
        out.extend_from_slice(idat);
        out.extend_from_slice(&crc32(idat).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(b"IEND");
        out.extend_from_slice(&crc32(b"IEND").to_be_bytes());
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in data {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_large_opaque_picture_is_resized_to_a_jpeg_and_a_thumbnail() {
        let p = process(&png(1600, 1000, 255)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.full.width, p.full.height), (800, 500));
        assert_eq!((p.thumb.width, p.thumb.height), (400, 250));
        assert_eq!(p.full.ext, Ext::Jpg);
        assert!(p.full.bytes.starts_with(&[0xff, 0xd8]), "a JPEG");
        let name = p.full.name();
        assert!(MediaName::parse(name.as_str()).is_some(), "{name:?}");
    }

    #[test]
    fn transparency_is_kept_as_png_and_small_pictures_are_not_enlarged() {
        let p = process(&png(120, 80, 100)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.full.width, p.full.height), (120, 80));
        assert_eq!(p.full.ext, Ext::Png);
        assert_eq!(p.full.name().content_type(), "image/png");
    }

    #[test]
    fn hostile_and_foreign_files_are_refused_precisely() {
        assert_eq!(
            process(&png_claiming(100_000, 100_000)).err(),
            Some(MediaError::TooManyPixels {
                width: 100_000,
                height: 100_000
            })
        );
        assert!(matches!(
            process(&png_claiming(9000, 10)),
            Err(MediaError::TooManyPixels { .. })
        ));
        assert_eq!(process(b"").err(), Some(MediaError::Empty));
        assert_eq!(
            process(b"hello, not a picture").err(),
            Some(MediaError::NotAnImage)
        );
        assert!(matches!(
            process(b"BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00"),
            Err(MediaError::Unsupported(_))
        ));
        let mut cut = png(50, 50, 255);
        cut.truncate(cut.len() / 2);
        assert!(matches!(process(&cut), Err(MediaError::Damaged(_))));
        assert_eq!(
            process(&vec![0u8; MAX_UPLOAD_BYTES + 1]).err(),
            Some(MediaError::TooLarge)
        );
    }

    #[test]
    fn only_strict_names_name_media() {
        let hash = "a".repeat(64);
        assert!(MediaName::parse(&format!("{hash}.jpg")).is_some());
        assert!(MediaName::parse(&format!("{hash}.png")).is_some());
        for bad in [
            format!("{hash}.gif"),
            format!("{hash}.jpg.png"),
            format!("{}.jpg", "A".repeat(64)),
            format!("{}.jpg", "a".repeat(63)),
            "../x".to_owned(),
            format!("../{hash}.jpg"),
            hash.clone(),
            String::new(),
        ] {
            assert!(MediaName::parse(&bad).is_none(), "{bad}");
        }
    }
}

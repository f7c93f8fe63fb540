//! The import format read as a stream: bytes in, batches of keys out, so a file of any size
//! is imported with memory for one batch and one line.

use std::collections::HashSet;
use std::mem;

use super::{ParsedKeys, MAX_KEY_LEN};

/// The longest line a streamed import reads (bytes). A longer line stops the import: no key
/// is that long (keys over [`MAX_KEY_LEN`] are only counted as rejected), and holding an
/// endless line would hold the whole file.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Why a streamed import stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStreamError {
    #[error(
        "line {line} is longer than {MAX_LINE_LEN} bytes (a card key is at most {MAX_KEY_LEN})"
    )]
    LineTooLong { line: u64 },
    #[error("line {line} is not UTF-8 text")]
    NotUtf8 { line: u64 },
}

/// Splits an import file fed in chunks of any size (a line may straddle chunks) into
/// batches of distinct keys, by the rules of [`super::parse_keys`]: one key per line,
/// surrounding whitespace trimmed, empty lines skipped, a leading UTF-8 byte-order mark
/// ignored, CRLF accepted, too long or control characters rejected. Repeats are found
/// within a batch; repeats across batches are for the importer to find (the store skips a
/// key it already has).
pub struct KeyStream {
    batch_size: usize,
    /// The current line's bytes so far (it has not ended yet).
    partial: Vec<u8>,
    /// Lines ended so far.
    lines: u64,
    batch: ParsedKeys,
    seen: HashSet<String>,
    /// An error found after batches completed in the same `push`: those batches are returned
    /// first, the error by the next call.
    failed: Option<KeyStreamError>,
}

impl KeyStream {
    /// Batches of (at most) `batch_size` keys.
    pub fn new(batch_size: usize) -> KeyStream {
        KeyStream {
            batch_size: batch_size.max(1),
            partial: Vec::new(),
            lines: 0,
            batch: ParsedKeys::default(),
            seen: HashSet::new(),
            failed: None,
        }
    }

    /// Feed the next bytes; returns the batches they completed (usually none). Once it has
    /// failed, the stream only repeats its error; every batch completed before the failing
    /// line is returned first.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<ParsedKeys>, KeyStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut full = Vec::new();
        match self.split(chunk, &mut full) {
            Ok(()) => Ok(full),
            Err(e) if full.is_empty() => {
                self.failed = Some(e.clone());
                Err(e)
            }
            Err(e) => {
                self.failed = Some(e);
                Ok(full)
            }
        }
    }

    fn split(
        &mut self,
        mut chunk: &[u8],
        full: &mut Vec<ParsedKeys>,
    ) -> Result<(), KeyStreamError> {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line(&chunk[..end])?;
            } else {
                self.extend_partial(&chunk[..end])?;
                let line = mem::take(&mut self.partial);
                self.line(&line)?;
            }
            chunk = &chunk[end + 1..];
            if self.batch.keys.len() >= self.batch_size {
                full.push(self.take_batch());
            }
        }
        self.extend_partial(chunk)
    }

    /// The end of the file: the last batch (possibly empty).
    pub fn finish(mut self) -> Result<ParsedKeys, KeyStreamError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.partial.is_empty() {
            let line = mem::take(&mut self.partial);
            self.line(&line)?;
        }
        Ok(self.batch)
    }

    /// Lines read so far (a line is counted once it has ended).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn take_batch(&mut self) -> ParsedKeys {
        self.seen.clear();
        mem::take(&mut self.batch)
    }

    fn extend_partial(&mut self, bytes: &[u8]) -> Result<(), KeyStreamError> {
        if self.partial.len() + bytes.len() > MAX_LINE_LEN {
            return Err(KeyStreamError::LineTooLong {
                line: self.lines + 1,
            });
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), KeyStreamError> {
        self.lines += 1;
        let line = self.lines;
        if bytes.len() > MAX_LINE_LEN {
            return Err(KeyStreamError::LineTooLong { line });
        }
        let bytes = match (line, bytes) {
            (1, [0xef, 0xbb, 0xbf, rest @ ..]) => rest,
            (_, b) => b,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| KeyStreamError::NotUtf8 { line })?;
        let key = text.trim();
        if key.is_empty() {
            return Ok(());
        }
        if key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
            self.batch.rejected += 1;
        } else if self.seen.insert(key.to_owned()) {
            self.batch.keys.push(key.to_owned());
        } else {
            self.batch.duplicates_in_file += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::parse_keys;
    use super::*;
    use proptest::prelude::*;

    /// Everything of `text` fed in chunks of `size` bytes, batches of `batch` keys.
    fn stream(text: &[u8], size: usize, batch: usize) -> Result<Vec<ParsedKeys>, KeyStreamError> {
        let mut s = KeyStream::new(batch);
        let mut out = Vec::new();
        for chunk in text.chunks(size.max(1)) {
            out.extend(s.push(chunk)?);
        }
        out.push(s.finish()?);
        Ok(out)
    }

    #[test]
    fn lines_straddling_chunks_crlf_blank_lines_and_the_byte_order_mark() {
        let text = "\u{feff}AAA\r\n  BBB  \n\nAAA\nC\u{7}D\n\r\nlast";
        for size in 1..text.len() {
            let batches = stream(text.as_bytes(), size, 100).unwrap();
            assert_eq!(batches.len(), 1);
            let b = &batches[0];
            assert_eq!(b.keys, ["AAA", "BBB", "last"], "chunks of {size}");
            assert_eq!((b.duplicates_in_file, b.rejected), (1, 1));
        }
        let long = "x".repeat(MAX_KEY_LEN + 1);
        assert_eq!(stream(long.as_bytes(), 7, 10).unwrap()[0].rejected, 1);
        assert_eq!(stream(b"", 7, 10).unwrap(), [ParsedKeys::default()]);
        // A byte-order mark is only the file's first bytes.
        let later = stream("A\n\u{feff}B\n".as_bytes(), 3, 10).unwrap();
        assert_eq!(later[0].keys, ["A", "\u{feff}B"]);
    }

    #[test]
    fn batches_are_full_and_repeats_across_them_are_left_to_the_store() {
        let text: String = (0..25).map(|i| format!("K{}\n", i % 20)).collect();
        let batches = stream(text.as_bytes(), 4, 10).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.keys.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(batches[2].keys, ["K0", "K1", "K2", "K3", "K4"]);
    }

    #[test]
    fn a_line_too_long_or_not_utf8_stops_the_stream_naming_the_line() {
        let long = format!("ok\n{}\n", "y".repeat(MAX_LINE_LEN + 1));
        for size in [1000, MAX_LINE_LEN + 10] {
            assert_eq!(
                stream(long.as_bytes(), size, 10),
                Err(KeyStreamError::LineTooLong { line: 2 })
            );
        }
        // Exactly the maximum is one (rejected) line, not an error.
        let max = "z".repeat(MAX_LINE_LEN);
        assert_eq!(stream(max.as_bytes(), 4096, 10).unwrap()[0].rejected, 1);
        let bad = b"a\nb\n\xff\xfe\n";
        assert_eq!(stream(bad, 2, 10), Err(KeyStreamError::NotUtf8 { line: 3 }));
        // Batches completed before the failing line, in the same chunk, come out first.
        let mut s = KeyStream::new(3);
        let text = format!("a\nb\nc\nd\n{}\nlater\n", "y".repeat(MAX_LINE_LEN + 1));
        let first = s.push(text.as_bytes()).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].keys, ["a", "b", "c"]);
        let again = Err(KeyStreamError::LineTooLong { line: 5 });
        assert_eq!(s.push(b"more\n"), again);
        assert_eq!(
            s.finish(),
            again.map(|_: Vec<ParsedKeys>| ParsedKeys::default())
        );
        // A character split across two chunks is fine.
        let split = "é\n".as_bytes();
        assert_eq!(stream(split, 1, 10).unwrap()[0].keys, ["é"]);
    }

    proptest! {
        /// In one batch, a stream finds exactly what `parse_keys` finds, however it is cut.
        #[test]
        fn streaming_agrees_with_parse_keys(
            lines in proptest::collection::vec("[ a-c\r\u{7}]{0,4}", 0..40),
            size in 1usize..16,
        ) {
            let text = lines.join("\n");
            let whole = parse_keys(&text);
            let batches = stream(text.as_bytes(), size, 1000).unwrap();
            prop_assert_eq!(batches.len(), 1);
            prop_assert_eq!(&batches[0], &whole);
        }
    }
}

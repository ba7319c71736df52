//! TensorBoard event files, written without TensorFlow or a protobuf library: scalars only.
//!
//! A file `events.out.tfevents.<seconds>.simsiam-rs.<pid>` is a sequence of TFRecords (length as
//! `u64` LE, its masked CRC32C, the bytes, their masked CRC32C), each holding one serialised
//! `tensorflow.Event` message. The first carries `file_version: "brain.Event:2"`; each later
//! one a `Summary` with one `simple_value`. The field numbers are those of TensorFlow's
//! `tensorflow/core/util/event.proto` and `tensorflow/core/framework/summary.proto`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Result, TrainError};

/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), as TFRecord checksums use.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC stored in
/// the data it covers does not check itself.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// A protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2): strings and embedded messages.
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An `Event` with `wall_time = 1` (double), `step = 2` (int64) and either `file_version = 3`
/// or `summary = 5`, a `Summary` whose `value = 1` is `{ tag = 1, simple_value = 2 (float) }`.
fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    varint(&mut out, 1 << 3 | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        varint(&mut out, 2 << 3);
        varint(&mut out, step as u64);
    }
    match body {
        EventBody::FileVersion(version) => bytes_field(&mut out, 3, version.as_bytes()),
        EventBody::Scalar(tag, value) => {
            let mut value_msg = Vec::with_capacity(tag.len() + 8);
            bytes_field(&mut value_msg, 1, tag.as_bytes());
            varint(&mut value_msg, 2 << 3 | 5);
            value_msg.extend_from_slice(&value.to_le_bytes());
            let mut summary = Vec::with_capacity(value_msg.len() + 2);
            bytes_field(&mut summary, 1, &value_msg);
            bytes_field(&mut out, 5, &summary);
        }
    }
    out
}

enum EventBody<'a> {
    FileVersion(&'a str),
    Scalar(&'a str, f32),
}

/// One TFRecord: the framing around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Writes scalars to a new TensorBoard event file in a folder; `tensorboard --logdir` on the
/// folder (or a parent) shows them.
#[derive(Debug)]
pub struct TensorBoardWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl TensorBoardWriter {
    /// Creates `dir/events.out.tfevents.<unix seconds>.simsiam-rs.<pid>` (a resumed run adds
    /// a second file, which TensorBoard reads after the first) and writes its version record.
    pub fn create(dir: &Path) -> Result<Self> {
        let seconds = now().floor() as u64;
        let path = dir.join(format!("events.out.tfevents.{seconds}.simsiam-rs.{}", std::process::id()));
        let file =
            File::options().create(true).append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut writer = Self { path, file: BufWriter::new(file) };
        writer.write(&event(now(), 0, EventBody::FileVersion("brain.Event:2")))?;
        writer.flush()?;
        Ok(writer)
    }

    /// Adds `value` under `tag` (`train/loss`) at `step`; buffered until [`Self::flush`].
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: u64) -> Result<()> {
        self.write(&event(now(), step as i64, EventBody::Scalar(tag, value)))
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(&record(data)).map_err(|e| TrainError::io(&self.path, e))
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_vectors() {
        // The check value of CRC-32C, and RFC 3720 (iSCSI) appendix B.4's test vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&descending), 0x113F_DB5C);
        assert_eq!(crc32c(b""), 0);
    }

    /// Splits a file into its records, checking both CRCs of each.
    fn read_records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (len_bytes, tail) = rest.split_at(8);
            let len_crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC");
            let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
            let (data, tail) = tail[4..].split_at(len);
            let data_crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
            assert_eq!(data_crc, masked_crc32c(data), "data CRC");
            records.push(data.to_vec());
            rest = &tail[4..];
        }
        records
    }

    #[test]
    fn a_written_file_reads_back_record_by_record() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let mut writer = TensorBoardWriter::create(dir.path())?;
        writer.add_scalar("train/loss", -0.5, 3)?;
        writer.add_scalar("epoch/knn_top1", 0.25, 300)?;
        writer.flush()?;
        let name = writer.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(name.starts_with("events.out.tfevents.") && name.contains(".simsiam-rs."), "{name}");
        let bytes = std::fs::read(writer.path()).map_err(|e| TrainError::io(writer.path(), e))?;
        let records = read_records(&bytes);
        assert_eq!(records.len(), 3);

        // Event { wall_time (field 1, fixed64), file_version (field 3) = "brain.Event:2" }.
        assert_eq!(records[0][0], 0x09);
        assert_eq!(&records[0][9..11], [0x1A, 13]);
        assert_eq!(&records[0][11..], b"brain.Event:2");
        // Event { wall_time, step = 3, summary { value { tag = "train/loss", simple_value = -0.5 } } }.
        let mut expected = vec![0x10, 3, 0x2A, 19, 0x0A, 17, 0x0A, 10];
        expected.extend_from_slice(b"train/loss");
        expected.push(0x15);
        expected.extend_from_slice(&(-0.5f32).to_le_bytes());
        assert_eq!(&records[1][9..], expected.as_slice());
        // Step 300 as a two-byte varint.
        assert_eq!(&records[2][9..12], [0x10, 0xAC, 0x02]);
        let wall_time = f64::from_le_bytes(records[1][1..9].try_into().expect("8 bytes"));
        assert!((wall_time - now()).abs() < 60.0, "{wall_time}");
        Ok(())
    }
}

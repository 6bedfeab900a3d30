//! The file's structure, checked before the object reader trusts it: preamble, file meta
//! information, transfer syntax, every element length against the bytes present, inflation.

use std::io::{Cursor, Read};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::stateful::decode::StatefulDecode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::attributes::*;
use crate::pipeline::decode::limits::{check_file_bytes, DecodeError, Format, Limits};

/// Parses the file after checking its structure: every length is proven against the bytes
/// present before the object reader trusts it.
pub fn open(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(FileMeta, Syntax, DefaultDicomObject), DecodeError> {
    check_file_bytes(bytes, limits)?;
    // Some writers leave the 128-byte preamble out and start with "DICM": put it back, so the
    // offsets below hold for both.
    let padded;
    let bytes = if bytes.starts_with(b"DICM") && bytes.get(128..132) != Some(b"DICM") {
        padded = [&[0u8; 128][..], bytes].concat();
        &padded[..]
    } else {
        bytes
    };
    if bytes.len() < 132 {
        return Err(DecodeError::Truncated(Format::Dicom));
    }
    if &bytes[128..132] != b"DICM" {
        return Err(corrupt("no \"DICM\" marker after the 128-byte preamble"));
    }
    let meta = scan_file_meta(bytes)?;
    let syntax = Syntax::from_uid(&meta.transfer_syntax)?;
    check_element_lengths(&bytes[meta.data_set_start..], &meta.transfer_syntax, limits)?;
    let obj = OpenFileOptions::new()
        .from_reader(&bytes[128..])
        .map_err(|_| corrupt("its data set could not be read"))?;
    Ok((meta, syntax, obj))
}

pub fn corrupt(detail: &str) -> DecodeError {
    DecodeError::Corrupt {
        format: Format::Dicom,
        detail: detail.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// File structure

pub struct FileMeta {
    pub transfer_syntax: String,
    pub data_set_start: usize,
}

/// Walks the file meta group (always Explicit VR Little Endian) by hand, the way the object
/// reader will (an unknown VR has a 4-byte length, as UN): its lengths are checked before the
/// object reader reserves memory for them, and its group length must be exact, since the object
/// reader trusts it to find where the data set starts.
pub fn scan_file_meta(bytes: &[u8]) -> Result<FileMeta, DecodeError> {
    let mut pos = 132usize;
    let mut transfer_syntax = None;
    let mut group_end = None;
    while pos < bytes.len() {
        let head = bytes
            .get(pos..pos + 8)
            .ok_or(DecodeError::Truncated(Format::Dicom))?;
        let group = u16::from_le_bytes([head[0], head[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let (header_len, len) = if is_short_vr(&head[4..6]) {
            (8, u32::from(u16::from_le_bytes([head[6], head[7]])))
        } else {
            let ext = bytes
                .get(pos + 8..pos + 12)
                .ok_or(DecodeError::Truncated(Format::Dicom))?;
            (12, u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]))
        };
        let start = pos + header_len;
        let end = start
            .checked_add(len as usize)
            .filter(|&end| end <= bytes.len())
            .ok_or(DecodeError::Truncated(Format::Dicom))?;
        let value = &bytes[start..end];
        match element {
            0x0000 if pos == 132 && len == 4 => {
                let length = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                group_end = Some(end as u64 + u64::from(length));
            }
            0x0000 => return Err(corrupt("its file meta group length is malformed")),
            0x0010 => {
                let uid = String::from_utf8_lossy(value);
                transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).trim().to_string());
            }
            _ => {}
        }
        pos = end;
    }
    if pos >= bytes.len() {
        // Nothing after the file meta information (or not even that).
        return Err(DecodeError::Truncated(Format::Dicom));
    }
    if group_end != Some(pos as u64) {
        return Err(corrupt(
            "its file meta group length is missing or does not match the file meta information",
        ));
    }
    let transfer_syntax = transfer_syntax
        .filter(|ts| !ts.is_empty())
        .ok_or_else(|| corrupt("the file meta information names no transfer syntax"))?;
    Ok(FileMeta {
        transfer_syntax,
        data_set_start: pos,
    })
}

/// The VRs whose length is a 16-bit field in Explicit VR (PS3.5 7.1.2).
pub fn is_short_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// How the data set and its pixel data are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Native,
    Rle,
    Jpeg,
}

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Retired in 2004 but still found in old archives; the reader hands its samples over in
/// native byte order like the others.
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

impl Syntax {
    /// The transfer syntaxes read here; anything else is refused with its name.
    pub fn from_uid(uid: &str) -> Result<Syntax, DecodeError> {
        match uid {
            IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE | EXPLICIT_VR_BE => {
                Ok(Syntax::Native)
            }
            "1.2.840.10008.1.2.5" => Ok(Syntax::Rle),
            // Baseline, Extended (2 & 4), Lossless (14), Lossless SV1 (14, predictor 1).
            "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70" => Ok(Syntax::Jpeg),
            _ => Err(DecodeError::DicomUnsupportedSyntax {
                name: syntax_name(uid),
                uid: printable(uid, 64),
            }),
        }
    }
}

/// A short name a technician will recognise in the export dialog of the sending system.
pub fn syntax_name(uid: &str) -> String {
    let short = match uid {
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => Some("JPEG 2000"),
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => Some("JPEG 2000 Part 2"),
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            Some("High-Throughput JPEG 2000")
        }
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Some("JPEG-LS"),
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            Some("JPEG XL")
        }
        u if u.starts_with("1.2.840.10008.1.2.4.10") => Some("MPEG/HEVC video"),
        _ => None,
    };
    match short {
        Some(s) => s.to_string(),
        None => match TransferSyntaxRegistry.get(uid) {
            Some(ts) => ts.name().to_string(),
            None => "unknown transfer syntax".to_string(),
        },
    }
}

/// Reads every element header of the data set without reading values, and refuses the file
/// when a length points past the end: the object reader reserves a declared length before it
/// finds out that the bytes are not there (up to 4 GiB for one element).
pub fn check_element_lengths(
    data_set: &[u8],
    transfer_syntax: &str,
    limits: &Limits,
) -> Result<(), DecodeError> {
    let inflated;
    let (data, ts_uid) = if transfer_syntax == DEFLATED_EXPLICIT_VR_LE {
        inflated = inflate(data_set, limits.max_file_bytes)?;
        (inflated.as_slice(), EXPLICIT_VR_LE)
    } else {
        (data_set, transfer_syntax)
    };
    let ts =
        TransferSyntaxRegistry
            .get(ts_uid)
            .ok_or_else(|| DecodeError::DicomUnsupportedSyntax {
                name: syntax_name(ts_uid),
                uid: printable(ts_uid, 64),
            })?;
    let total = data.len() as u64;
    let mut reader = LazyDataSetReader::new_with_ts(Cursor::new(data), ts)
        .map_err(|_| corrupt("its data set could not be read"))?;
    while let Some(token) = reader.advance() {
        let token = token.map_err(|e| parse_error(&e))?;
        let end = match &token {
            LazyDataToken::LazyValue { header, decoder } => header
                .len
                .get()
                .map(|len| decoder.position() + u64::from(len)),
            LazyDataToken::LazyItemValue { len, decoder } => {
                Some(decoder.position() + u64::from(*len))
            }
            _ => None,
        };
        if end.is_some_and(|end| end > total) {
            return Err(DecodeError::Truncated(Format::Dicom));
        }
        token.skip().map_err(|e| parse_error(&e))?;
    }
    Ok(())
}

/// Inflates a deflated data set (raw deflate, PS3.5 A.5) into at most `max` bytes.
pub fn inflate(data: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(data)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated(Format::Dicom),
            _ => corrupt("its deflated data set could not be inflated"),
        })?;
    if out.len() as u64 > max {
        return Err(DecodeError::DicomInflatedTooLarge { max });
    }
    Ok(out)
}

/// An error and its sources on one line, each message once, at most 200 printable characters
/// (pixel decoding errors quote no element values, only attribute names and codec messages).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    printable(&parts.join(": "), 200)
}

/// Running out of bytes anywhere in the error chain means truncation; anything else is damage.
/// The parser's own message is not shown: it may quote element values.
pub fn parse_error(e: &(dyn std::error::Error + 'static)) -> DecodeError {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return DecodeError::Truncated(Format::Dicom);
            }
        }
        source = err.source();
    }
    corrupt("its data set is malformed")
}

// ---------------------------------------------------------------------------------------------
// Header attributes

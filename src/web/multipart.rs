//! multipart/form-data uploads: finds the one `file` field in a body already read (within the
//! upload limit) and cuts its bytes out in place, so an upload is never held twice in memory.
//!
//! RFC 7578 on top of RFC 2046 §5.1: `--boundary CRLF headers CRLF CRLF content CRLF --boundary
//! ... --boundary--`. Every loop is bounded by the body's length; header blocks and the number
//! of parts are capped.

/// Header block of one part (Content-Disposition and Content-Type; browsers send ~150 bytes).
const MAX_PART_HEAD: usize = 8 * 1024;
/// Parts in one body; the console's form has one.
const MAX_PARTS: usize = 16;

/// Why an upload body could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The request's Content-Type is not `multipart/form-data` with a usable boundary.
    #[error("send the file as multipart/form-data with a boundary (an HTML form or curl -F)")]
    NotMultipart,
    /// The body does not follow the multipart format (cut short, or not what it claims to be).
    #[error("the upload is not well-formed multipart/form-data ({0})")]
    Malformed(&'static str),
    /// No part is named `file`.
    #[error("the upload has no field named \"file\"")]
    NoFile,
    /// More than one part is named `file`: one image per request.
    #[error("send one file per request (the form field \"file\" appears more than once)")]
    SeveralFiles,
    /// The file is larger than the upload limit.
    #[error("the file is larger than the upload limit of {} (web.max_upload_mb in the configuration)", crate::pipeline::decode::limits::megabytes(*.0))]
    TooLarge(u64),
}

/// The boundary of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            // RFC 2046: 1–70 characters from a restricted set, not ending in a space.
            let ok = (1..=70).contains(&v.len())
                && !v.ends_with(' ')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b));
            return if ok {
                Ok(v.to_string())
            } else {
                Err(MultipartError::NotMultipart)
            };
        }
    }
    Err(MultipartError::NotMultipart)
}

/// The `file` field of an upload.
#[derive(Debug, PartialEq, Eq)]
pub struct FileField {
    /// The file name the client sent, as sent (untrusted: only for display, after sanitising).
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

/// Takes the `file` field out of `body` (reusing its memory). `max_file` bounds the field.
pub fn take_file(
    mut body: Vec<u8>,
    boundary: &str,
    max_file: u64,
) -> Result<FileField, MultipartError> {
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first boundary opens the body, or follows a preamble and a line break.
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(&body, delimiter.as_bytes(), 0)
            .map(|at| at + delimiter.len())
            .ok_or(MultipartError::Malformed("no opening boundary"))?
    };
    let mut found: Option<(Option<String>, usize, usize)> = None;
    for _ in 0..MAX_PARTS {
        // After a boundary: "--" closes the body, CRLF opens a part.
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            let (filename, start, end) = found.ok_or(MultipartError::NoFile)?;
            if (end - start) as u64 > max_file {
                return Err(MultipartError::TooLarge(max_file));
            }
            body.truncate(end);
            body.drain(..start);
            return Ok(FileField {
                filename,
                bytes: body,
            });
        }
        // Transport padding (spaces/tabs) may precede the line break.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(MultipartError::Malformed(
                "boundary not followed by a line break",
            ));
        }
        pos += pad + 2;
        let head_end = find(
            &body[..body.len().min(pos + MAX_PART_HEAD)],
            b"\r\n\r\n",
            pos,
        )
        .ok_or(MultipartError::Malformed(
            "part headers missing or too long",
        ))?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| MultipartError::Malformed("part headers are not text"))?;
        let disposition = part_disposition(head)?;
        let start = head_end + 4;
        let end = find(&body, delimiter.as_bytes(), start).ok_or(MultipartError::Malformed(
            "the body ends inside a part (upload cut short?)",
        ))?;
        if disposition.name.as_deref() == Some("file") {
            if found.is_some() {
                return Err(MultipartError::SeveralFiles);
            }
            if (end - start) as u64 > max_file {
                return Err(MultipartError::TooLarge(max_file));
            }
            found = Some((disposition.filename, start, end));
        }
        pos = end + delimiter.len();
    }
    Err(MultipartError::Malformed("too many parts"))
}

struct Disposition {
    name: Option<String>,
    filename: Option<String>,
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data; ...` header.
fn part_disposition(head: &str) -> Result<Disposition, MultipartError> {
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            return Err(MultipartError::Malformed("bad part header"));
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let (kind, params) = v.trim().split_once(';').unwrap_or((v.trim(), ""));
        if !kind.trim().eq_ignore_ascii_case("form-data") {
            return Err(MultipartError::Malformed("a part is not form-data"));
        }
        let params = parse_params(params)?;
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        return Ok(Disposition {
            name: get("name"),
            filename: get("filename"),
        });
    }
    Err(MultipartError::Malformed(
        "a part has no Content-Disposition",
    ))
}

/// `; key=value; key="quoted \"value\""` → pairs. Browsers escape `"` in file names as `%22`
/// and leave other bytes raw; `\"` and `\\` are unescaped for other clients.
fn parse_params(mut s: &str) -> Result<Vec<(String, String)>, MultipartError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ';']);
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s.find('=').ok_or(MultipartError::Malformed(
            "bad Content-Disposition parameter",
        ))?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(rest) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = rest.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    // Browsers send `\` as is (a Windows path); older curl escapes `"` and `\`.
                    '\\' => match chars.clone().next() {
                        Some((_, e @ ('"' | '\\'))) => {
                            chars.next();
                            v.push(e);
                        }
                        _ => v.push('\\'),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or(MultipartError::Malformed("unterminated quoted parameter"))?;
            value = v;
            s = &rest[end + 1..];
        } else {
            let end = s.find(';').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        out.push((key, value));
    }
}

/// First position of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        // Skip to the next candidate byte; the delimiter starts with '\r', rare in most images.
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            Some(off) => i += off,
            None => return None,
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A client's file name made safe to show and to pass on: the last path component only,
/// letters, digits and a few punctuation marks, at most 100 characters, never empty or hidden.
pub fn sanitize_name(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c.is_alphanumeric() || " ._-()+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    name = name
        .trim_start_matches(['.', ' '])
        .trim_end_matches([' ', '.'])
        .to_string();
    if name.is_empty() {
        "upload".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &str)], boundary: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (head, content) in parts {
            b.extend_from_slice(format!("--{boundary}\r\n{head}\r\n\r\n{content}\r\n").as_bytes());
        }
        b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        b
    }

    const FILE_HEAD: &str =
        "Content-Disposition: form-data; name=\"file\"; filename=\"knee.png\"\r\nContent-Type: image/png";

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKitFormBoundaryAbC1").unwrap(),
            "----WebKitFormBoundaryAbC1"
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b:c\"").unwrap(),
            "a b:c"
        );
        for bad in [
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a\u{7f}b",
            &format!("multipart/form-data; boundary={}", "x".repeat(71)),
            "multipart/mixed; boundary=abc",
        ] {
            assert_eq!(boundary(bad), Err(MultipartError::NotMultipart), "{bad}");
        }
    }

    #[test]
    fn takes_the_file_field_among_others() {
        let b = body(
            &[
                ("Content-Disposition: form-data; name=\"note\"", "hello"),
                (FILE_HEAD, "\u{1}PNG\r\n--not-the-boundary\r\n"),
                ("Content-Disposition: form-data; name=\"x\"", ""),
            ],
            "XyZ",
        );
        let f = take_file(b, "XyZ", 1000).unwrap();
        assert_eq!(f.bytes, b"\x01PNG\r\n--not-the-boundary\r\n");
        assert_eq!(f.filename.as_deref(), Some("knee.png"));
    }

    #[test]
    fn preamble_padding_and_empty_file() {
        let mut b = b"ignored preamble\r\n--B  \r\n".to_vec();
        b.extend_from_slice(FILE_HEAD.as_bytes());
        b.extend_from_slice(b"\r\n\r\n\r\n--B--");
        let f = take_file(b, "B", 10).unwrap();
        assert!(f.bytes.is_empty());
    }

    #[test]
    fn binary_content_with_near_boundaries() {
        let mut content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        content.extend_from_slice(b"\r\n--B0undary\r\n--Boundar\r\r\n-");
        let mut b = b"--Boundary\r\n".to_vec();
        b.extend_from_slice(FILE_HEAD.as_bytes());
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(&content);
        b.extend_from_slice(b"\r\n--Boundary--\r\n");
        assert_eq!(take_file(b, "Boundary", 1 << 20).unwrap().bytes, content);
    }

    #[test]
    fn size_limit_counts_the_file_only() {
        let b = body(&[(FILE_HEAD, "0123456789")], "B");
        assert_eq!(take_file(b.clone(), "B", 10).unwrap().bytes.len(), 10);
        assert_eq!(take_file(b, "B", 9), Err(MultipartError::TooLarge(9)));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let good = body(&[(FILE_HEAD, "data")], "B");
        // Cut at every length: never a panic, never a file.
        for n in 0..good.len() - 2 {
            assert!(
                take_file(good[..n].to_vec(), "B", 100).is_err(),
                "cut at {n}"
            );
        }
        let cases: Vec<(Vec<u8>, MultipartError)> = vec![
            (
                b"no boundary here".to_vec(),
                MultipartError::Malformed("no opening boundary"),
            ),
            (
                body(
                    &[("Content-Disposition: form-data; name=\"other\"", "x")],
                    "B",
                ),
                MultipartError::NoFile,
            ),
            (
                body(&[(FILE_HEAD, "a"), (FILE_HEAD, "b")], "B"),
                MultipartError::SeveralFiles,
            ),
            (
                body(&[("Content-Type: image/png", "a")], "B"),
                MultipartError::Malformed("a part has no Content-Disposition"),
            ),
            (
                body(
                    &[("Content-Disposition: attachment; name=\"file\"", "a")],
                    "B",
                ),
                MultipartError::Malformed("a part is not form-data"),
            ),
            (
                body(&[("Content-Disposition: form-data; name=\"file", "a")], "B"),
                MultipartError::Malformed("unterminated quoted parameter"),
            ),
            (
                b"--B\nContent-Disposition: form-data; name=file\n\nx\n--B--".to_vec(),
                MultipartError::Malformed("boundary not followed by a line break"),
            ),
        ];
        for (b, want) in cases {
            assert_eq!(take_file(b, "B", 100), Err(want));
        }
    }

    #[test]
    fn part_headers_and_part_count_are_bounded() {
        let long = format!(
            "Content-Disposition: form-data; name=\"file\"\r\nX-Pad: {}",
            "a".repeat(MAX_PART_HEAD)
        );
        assert_eq!(
            take_file(body(&[(&long, "x")], "B"), "B", 100),
            Err(MultipartError::Malformed(
                "part headers missing or too long"
            ))
        );
        let many: Vec<(&str, &str)> =
            vec![("Content-Disposition: form-data; name=\"n\"", "v"); MAX_PARTS + 1];
        assert_eq!(
            take_file(body(&many, "B"), "B", 100),
            Err(MultipartError::Malformed("too many parts"))
        );
    }

    #[test]
    fn quoted_file_names() {
        let head = "Content-Disposition: form-data; name=\"file\"; filename=\"a\\\"b;c.png\"";
        let f = take_file(body(&[(head, "x")], "B"), "B", 10).unwrap();
        assert_eq!(f.filename.as_deref(), Some("a\"b;c.png"));
        let head = "content-disposition: form-data; filename=plain.png; name=file";
        let f = take_file(body(&[(head, "x")], "B"), "B", 10).unwrap();
        assert_eq!(f.filename.as_deref(), Some("plain.png"));
        let head = "Content-Disposition: form-data; name=\"file\"; filename=\"C:\\scans\\x.png\"";
        let f = take_file(body(&[(head, "x")], "B"), "B", 10).unwrap();
        assert_eq!(f.filename.as_deref(), Some("C:\\scans\\x.png"));
    }

    #[test]
    fn names_are_sanitised() {
        for (raw, want) in [
            (Some("knee.png"), "knee.png"),
            (Some("../../etc/passwd"), "passwd"),
            (Some("..\\..\\boot.ini"), "boot.ini"),
            (Some("/abs/path/x.png"), "x.png"),
            (Some("C:\\Users\\a\\knee 1 (left).jpg"), "knee 1 (left).jpg"),
            (Some(".hidden"), "hidden"),
            (Some(".."), "upload"),
            (Some("a\u{0}b\nc\u{202e}gnp.exe"), "abc_gnp.exe"),
            (Some("<script>.png"), "_script_.png"),
            (Some("rö ntgen.png"), "rö ntgen.png"),
            (Some(""), "upload"),
            (None, "upload"),
        ] {
            assert_eq!(sanitize_name(raw), want, "{raw:?}");
        }
        assert_eq!(sanitize_name(Some(&"x".repeat(500))).len(), 100);
    }
}

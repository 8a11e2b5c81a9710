//! S3 XML: a tiny escaping writer for response bodies and serde parsers for the two request bodies the gateway
//! reads (`DeleteObjects`, `CompleteMultipartUpload`).
//!
//! Response documents are small and flat, so a string builder that escapes every text node is simpler and harder
//! to get wrong than serde attribute gymnastics for S3's element naming. Request bodies are size-limited by the
//! caller before parsing; any parse failure is `MalformedXML`.

use serde::Deserialize;

use super::error::{S3Error, S3ErrorCode, S3Result};

pub const S3_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Builds an XML document; [`XmlWriter::root`] opens a root element in the S3 namespace.
pub struct XmlWriter {
    out: String,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlWriter {
    pub fn new() -> Self {
        XmlWriter {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        }
    }

    /// Opens the S3-namespaced root element.
    pub fn root(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns=\"");
        self.out.push_str(S3_NAMESPACE);
        self.out.push_str("\">");
    }

    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn element(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.out, text);
        self.close(name);
    }

    /// Escaped text inside the currently open element.
    pub fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry literally (control characters in keys) go as references.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// S3 timestamp format in listings and copy results: `2006-01-02T15:04:05.000Z`.
pub fn format_timestamp(unix_seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string())
}

/// `<Delete><Object><Key>..</Key></Object>...<Quiet>true</Quiet></Delete>`.
#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObject>,
    #[serde(rename = "Quiet", default)]
    pub quiet: bool,
}

#[derive(Debug, Deserialize)]
pub struct DeleteObject {
    #[serde(rename = "Key")]
    pub key: String,
}

/// `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"..."</ETag></Part>...`.
#[derive(Debug, Deserialize)]
pub struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    pub parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
pub struct CompletedPart {
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    #[serde(rename = "ETag", default)]
    pub etag: String,
}

pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> S3Result<T> {
    let text = std::str::from_utf8(body).map_err(|_| S3Error::new(S3ErrorCode::MalformedXML))?;
    quick_xml::de::from_str(text).map_err(|e| S3Error::with_message(S3ErrorCode::MalformedXML, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_escapes_text() {
        let mut w = XmlWriter::new();
        w.root("R");
        w.element("Key", "a<b>&\"c\u{1}");
        w.close("R");
        let doc = w.finish();
        assert!(doc.contains("<Key>a&lt;b&gt;&amp;&quot;c&#x1;</Key>"), "{doc}");
        assert!(doc.contains(S3_NAMESPACE));
    }

    #[test]
    fn parses_delete_with_namespace_and_quiet() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>main/a</Key></Object><Object><Key>main/b&amp;c</Key></Object><Quiet>true</Quiet></Delete>"#;
        let parsed: DeleteRequest = parse(body).unwrap();
        assert!(parsed.quiet);
        assert_eq!(
            parsed.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            ["main/a", "main/b&c"]
        );
    }

    #[test]
    fn parses_complete_multipart() {
        let body = br#"<CompleteMultipartUpload><Part><ETag>"abc"</ETag><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>"def"</ETag></Part></CompleteMultipartUpload>"#;
        let parsed: CompleteMultipartUpload = parse(body).unwrap();
        assert_eq!(parsed.parts.len(), 2);
        assert_eq!(parsed.parts[1].part_number, 2);
        assert_eq!(parsed.parts[0].etag, "\"abc\"");
    }

    #[test]
    fn malformed_xml_is_an_s3_error() {
        let err = parse::<DeleteRequest>(b"<Delete><Object><Key>x</Object>").unwrap_err();
        assert_eq!(err.code, S3ErrorCode::MalformedXML);
        let err = parse::<CompleteMultipartUpload>(b"<C><Part><PartNumber>x</PartNumber></Part></C>").unwrap_err();
        assert_eq!(err.code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp(1_136_214_245), "2006-01-02T15:04:05.000Z");
    }
}

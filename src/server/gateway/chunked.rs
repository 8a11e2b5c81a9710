//! `aws-chunked` body decoding as a streaming adapter.
//!
//! Wire format (lakefs-api.md §7.7):
//! ```text
//! <hex size>[;chunk-signature=<64 hex>]\r\n<size bytes>\r\n ... 0[;chunk-signature=..]\r\n[trailer lines]\r\n
//! ```
//! Signed modes chain each chunk's signature from the previous one, starting at the request's seed signature;
//! the final zero-size chunk is signed too. Trailer modes end with `name:value` lines (a checksum named by
//! `X-Amz-Trailer`), in the signed variant followed by `x-amz-trailer-signature`.
//!
//! The decoder never holds more than one network read plus one header line: chunk data is passed on as it
//! arrives, and a chunk's signature is checked before its last bytes are released, so a bad chunk fails the
//! stream before the consumer could finish. Header lines are limited to 4 KiB. The total decoded size must equal
//! `X-Amz-Decoded-Content-Length` when given. Any failure is recorded in the shared [`BodyReport`] (so the
//! handler can answer with the precise S3 error whatever the consumer does with the I/O error) and ends the
//! stream with an error, which makes the blob write fail: nothing is stored.

use std::io;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::body::BodyReport;
use super::error::{S3Error, S3ErrorCode};
use super::sigv4::{ChunkSigner, EMPTY_SHA256};

/// Longest accepted chunk header or trailer line.
pub const MAX_LINE: usize = 4096;
/// Most trailer lines accepted.
const MAX_TRAILERS: usize = 16;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Which aws-chunked flavour the body uses.
#[derive(Clone, Debug)]
pub enum ChunkMode {
    Signed(ChunkSigner),
    SignedTrailer(ChunkSigner),
    UnsignedTrailer,
}

impl ChunkMode {
    fn signer(&self) -> Option<&ChunkSigner> {
        match self {
            ChunkMode::Signed(s) | ChunkMode::SignedTrailer(s) => Some(s),
            ChunkMode::UnsignedTrailer => None,
        }
    }

    fn has_trailer(&self) -> bool {
        !matches!(self, ChunkMode::Signed(_))
    }
}

enum Phase {
    Header,
    Data {
        remaining: u64,
        hasher: Sha256,
        signature: Option<String>,
    },
    DataEnd,
    Done,
}

struct Decoder {
    inner: ByteStream,
    inner_done: bool,
    buf: BytesMut,
    mode: ChunkMode,
    phase: Phase,
    previous_signature: String,
    decoded: u64,
    decoded_length: Option<u64>,
    report: BodyReport,
}

/// Decodes an aws-chunked `body`; the result yields the object's bytes.
pub fn decode(body: ByteStream, mode: ChunkMode, decoded_length: Option<u64>, report: BodyReport) -> ByteStream {
    let previous_signature = mode.signer().map(|s| s.seed_signature.clone()).unwrap_or_default();
    let decoder = Decoder {
        inner: body,
        inner_done: false,
        buf: BytesMut::new(),
        mode,
        phase: Phase::Header,
        previous_signature,
        decoded: 0,
        decoded_length,
        report,
    };
    Box::pin(futures::stream::unfold(decoder, |mut decoder| async move {
        match decoder.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), decoder)),
            Ok(None) => None,
            Err(error) => {
                let message = error.message.clone();
                decoder.report.fail(error);
                decoder.phase = Phase::Done;
                Some((Err(io::Error::new(io::ErrorKind::InvalidData, message)), decoder))
            }
        }
    }))
}

fn incomplete() -> S3Error {
    S3Error::new(S3ErrorCode::IncompleteBody)
}

fn bad_chunk(message: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        format!("malformed aws-chunked body: {message}"),
    )
}

impl Decoder {
    /// Reads more of the underlying body into `buf`; false at its end.
    async fn fill(&mut self) -> Result<bool, S3Error> {
        if self.inner_done {
            return Ok(false);
        }
        match self.inner.next().await {
            Some(Ok(bytes)) => {
                self.buf.extend_from_slice(&bytes);
                Ok(true)
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "request body failed");
                Err(incomplete())
            }
            None => {
                self.inner_done = true;
                Ok(false)
            }
        }
    }

    /// One CRLF-terminated line without its terminator; `None` at a clean end of body.
    async fn read_line(&mut self) -> Result<Option<String>, S3Error> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                if end > MAX_LINE {
                    return Err(bad_chunk("line too long"));
                }
                let line = self.buf.split_to(end);
                self.buf.advance(2);
                return String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| bad_chunk("line is not UTF-8"));
            }
            if self.buf.len() > MAX_LINE {
                return Err(bad_chunk("line too long"));
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(incomplete());
            }
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            match &mut self.phase {
                Phase::Done => return Ok(None),
                Phase::Header => {
                    let line = self.read_line().await?.ok_or_else(incomplete)?;
                    let (size, signature) = self.parse_header(&line)?;
                    if size == 0 {
                        self.finish(signature).await?;
                        self.phase = Phase::Done;
                        return Ok(None);
                    }
                    self.phase = Phase::Data {
                        remaining: size,
                        hasher: Sha256::new(),
                        signature,
                    };
                }
                Phase::Data { .. } => {
                    if self.buf.is_empty() && !self.fill().await? {
                        return Err(incomplete());
                    }
                    let Phase::Data {
                        remaining,
                        hasher,
                        signature,
                    } = &mut self.phase
                    else {
                        continue;
                    };
                    let take = (*remaining).min(self.buf.len() as u64) as usize;
                    let data = self.buf.split_to(take).freeze();
                    hasher.update(&data);
                    *remaining -= take as u64;
                    self.decoded += take as u64;
                    if self.decoded_length.is_some_and(|expected| self.decoded > expected) {
                        return Err(bad_chunk("more data than X-Amz-Decoded-Content-Length"));
                    }
                    if *remaining == 0 {
                        let digest = hex::encode(std::mem::take(hasher).finalize());
                        let signature = signature.take();
                        self.check_chunk_signature(signature.as_deref(), &digest)?;
                        self.phase = Phase::DataEnd;
                    }
                    return Ok(Some(data));
                }
                Phase::DataEnd => {
                    while self.buf.len() < 2 {
                        if !self.fill().await? {
                            return Err(incomplete());
                        }
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(bad_chunk("chunk data not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.phase = Phase::Header;
                }
            }
        }
    }

    fn parse_header(&self, line: &str) -> Result<(u64, Option<String>), S3Error> {
        let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
        let size = size.trim();
        if size.is_empty() || size.len() > 16 {
            return Err(bad_chunk("bad chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| bad_chunk("bad chunk size"))?;
        let signature = extensions
            .split(';')
            .filter_map(|e| e.trim().strip_prefix("chunk-signature="))
            .next()
            .map(|s| s.to_ascii_lowercase());
        if self.mode.signer().is_some() && signature.is_none() {
            return Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch));
        }
        Ok((size, signature))
    }

    fn check_chunk_signature(&mut self, provided: Option<&str>, digest: &str) -> Result<(), S3Error> {
        let Some(signer) = self.mode.signer() else {
            return Ok(());
        };
        let expected = signer.chunk_signature(&self.previous_signature, digest);
        match provided {
            Some(p) if crate::server::auth::constant_time_eq(p.as_bytes(), expected.as_bytes()) => {
                self.previous_signature = expected;
                Ok(())
            }
            _ => Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch)),
        }
    }

    /// After the zero-size chunk: its signature, the trailers and the length check.
    async fn finish(&mut self, signature: Option<String>) -> Result<(), S3Error> {
        self.check_chunk_signature(signature.as_deref(), EMPTY_SHA256)?;
        if let Some(expected) = self.decoded_length {
            if self.decoded != expected {
                return Err(incomplete());
            }
        }
        let mut trailers = Vec::new();
        let mut trailer_signature = None;
        // Signed mode ends with one empty line; trailer modes with trailer lines and then an empty line. Some
        // senders omit the final CRLF, so a clean end of body is accepted in its place.
        while let Some(line) = self.read_line().await? {
            if line.is_empty() {
                break;
            }
            if !self.mode.has_trailer() {
                return Err(bad_chunk("data after the final chunk"));
            }
            let (name, value) = line.split_once(':').ok_or_else(|| bad_chunk("bad trailer line"))?;
            let name = name.trim().to_ascii_lowercase();
            if name == "x-amz-trailer-signature" {
                trailer_signature = Some(value.trim().to_ascii_lowercase());
            } else {
                if trailers.len() >= MAX_TRAILERS {
                    return Err(bad_chunk("too many trailers"));
                }
                trailers.push((name, value.trim().to_string()));
            }
        }
        if let ChunkMode::SignedTrailer(signer) = &self.mode {
            let canonical: String = trailers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
            let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
            let expected = signer.trailer_signature(&self.previous_signature, &digest);
            let matches = trailer_signature
                .as_deref()
                .is_some_and(|p| crate::server::auth::constant_time_eq(p.as_bytes(), expected.as_bytes()));
            if !matches {
                return Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch));
            }
        }
        self.report.set_trailers(trailers);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(pieces: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(
            pieces.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    async fn collect(stream: ByteStream) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            out.extend_from_slice(&item?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn unsigned_trailer_split_anywhere() {
        let body: &'static [u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        for split in 1..body.len() {
            let report = BodyReport::default();
            let stream = stream_of(vec![&body[..split], &body[split..]]);
            let out = collect(decode(stream, ChunkMode::UnsignedTrailer, Some(11), report.clone()))
                .await
                .unwrap();
            assert_eq!(out, b"hello world");
            assert_eq!(
                report.trailers(),
                vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]
            );
        }
    }

    #[tokio::test]
    async fn truncated_and_wrong_length_fail() {
        let report = BodyReport::default();
        let err = collect(decode(
            stream_of(vec![b"5\r\nhel"]),
            ChunkMode::UnsignedTrailer,
            None,
            report.clone(),
        ))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(report.error().unwrap().code, S3ErrorCode::IncompleteBody);

        let report = BodyReport::default();
        let body = stream_of(vec![b"5\r\nhello\r\n0\r\n\r\n"]);
        assert!(
            collect(decode(body, ChunkMode::UnsignedTrailer, Some(6), report.clone()))
                .await
                .is_err()
        );

        let report = BodyReport::default();
        let body = stream_of(vec![b"zz\r\nhello\r\n0\r\n\r\n"]);
        assert!(collect(decode(body, ChunkMode::UnsignedTrailer, None, report.clone()))
            .await
            .is_err());
    }

    /// The example of the AWS "signature calculation for streaming uploads" page: 64 KiB + 1 KiB of `a`.
    fn aws_example_body(second_chunk_signature: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(
            b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
        );
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(format!("\r\n400;chunk-signature={second_chunk_signature}\r\n").as_bytes());
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(
            b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
        );
        body
    }

    fn aws_example_signer() -> ChunkSigner {
        ChunkSigner::new(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        )
    }

    #[tokio::test]
    async fn signed_chunks_verify_and_tampering_fails() {
        let good = aws_example_body("0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
        let pieces: Vec<Result<Bytes, io::Error>> = good.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let report = BodyReport::default();
        let decoded = collect(decode(
            Box::pin(futures::stream::iter(pieces)),
            ChunkMode::Signed(aws_example_signer()),
            Some(66560),
            report.clone(),
        ))
        .await
        .unwrap();
        assert_eq!(decoded, vec![b'a'; 66560]);
        assert!(report.error().is_none());

        let bad = aws_example_body("1055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
        let report = BodyReport::default();
        let stream: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(bad))]));
        let result = collect(decode(
            stream,
            ChunkMode::Signed(aws_example_signer()),
            None,
            report.clone(),
        ))
        .await;
        assert!(result.is_err());
        assert_eq!(report.error().unwrap().code, S3ErrorCode::SignatureDoesNotMatch);
    }

    fn run_blocking(stream: ByteStream) -> Result<Vec<u8>, io::Error> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(collect(stream))
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the decoder; they decode or fail with a recorded S3 error.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), split in 0usize..600) {
            let split = split.min(body.len());
            let pieces = vec![Ok(Bytes::copy_from_slice(&body[..split])), Ok(Bytes::copy_from_slice(&body[split..]))];
            let report = BodyReport::default();
            let result = run_blocking(decode(
                Box::pin(futures::stream::iter(pieces)),
                ChunkMode::UnsignedTrailer,
                None,
                report.clone(),
            ));
            if result.is_err() {
                proptest::prop_assert!(report.error().is_some());
            }
        }

        /// Any chunking of any data, delivered in any pieces, decodes to the data.
        #[test]
        fn valid_bodies_round_trip(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            chunk in 1usize..700,
            piece in 1usize..500,
        ) {
            let mut body = Vec::new();
            for c in data.chunks(chunk) {
                body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let pieces: Vec<Result<Bytes, io::Error>> = body.chunks(piece).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
            let decoded = run_blocking(decode(
                Box::pin(futures::stream::iter(pieces)),
                ChunkMode::UnsignedTrailer,
                Some(data.len() as u64),
                BodyReport::default(),
            ));
            proptest::prop_assert_eq!(decoded.unwrap(), data);
        }
    }

    #[tokio::test]
    async fn overlong_header_line_fails() {
        let long: &'static [u8] = Box::leak(vec![b'1'; MAX_LINE + 10].into_boxed_slice());
        let report = BodyReport::default();
        assert!(collect(decode(
            stream_of(vec![long]),
            ChunkMode::UnsignedTrailer,
            None,
            report.clone()
        ))
        .await
        .is_err());
        assert_eq!(report.error().unwrap().code, S3ErrorCode::InvalidRequest);
    }
}

//! S3 "flexible checksums" (`x-amz-checksum-crc32`, `-crc32c`, `-sha1`, `-sha256`) computed while a body streams.
//!
//! Current SDKs send one by default, in a header or - with aws-chunked bodies - as a trailer named by
//! `X-Amz-Trailer`. Over plain HTTP with an unsigned payload it is the only integrity check the data has, so the
//! gateway computes it on the bytes as they pass and compares once the body is complete. SHA-256 needs no extra
//! pass (the blob id is the SHA-256); CRC64-NVME is accepted unverified.

use std::sync::{Arc, Mutex};

use base64::Engine;
use sha1::Sha1;
use sha2::Digest;

/// Checksum algorithms verified by streaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
}

impl Algorithm {
    /// The algorithm a `x-amz-checksum-*` header or trailer name refers to, when it is verified here.
    pub fn from_header_name(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-checksum-crc32" => Some(Algorithm::Crc32),
            "x-amz-checksum-crc32c" => Some(Algorithm::Crc32c),
            "x-amz-checksum-sha1" => Some(Algorithm::Sha1),
            _ => None,
        }
    }

    pub fn header_name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha1 => "SHA1",
        }
    }
}

enum State {
    Crc(crc_fast::Digest),
    Sha1(Sha1),
}

/// A running checksum, shared between the body stream (which feeds it) and the handler (which reads it).
#[derive(Clone)]
pub struct Checksummer {
    algorithm: Algorithm,
    state: Arc<Mutex<State>>,
}

impl Checksummer {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            // crc-fast (already built for the AWS SDK) uses the CPU's carry-less multiply: a table-driven CRC
            // was a fifth of the server's CPU time on a large upload.
            Algorithm::Crc32 => State::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc)),
            Algorithm::Crc32c => State::Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)),
            Algorithm::Sha1 => State::Sha1(Sha1::new()),
        };
        Checksummer {
            algorithm,
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn update(&self, data: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            State::Crc(digest) => digest.update(data),
            State::Sha1(hasher) => hasher.update(data),
        }
    }

    /// The checksum so far, base64-encoded as S3 sends it.
    pub fn base64(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let digest = match &*state {
            State::Crc(digest) => (digest.finalize() as u32).to_be_bytes().to_vec(),
            State::Sha1(hasher) => hasher.clone().finalize().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(algorithm: Algorithm, pieces: &[&[u8]]) -> String {
        let c = Checksummer::new(algorithm);
        for piece in pieces {
            c.update(piece);
        }
        c.base64()
    }

    #[test]
    fn known_values() {
        // CRC-32("123456789") = 0xCBF43926, CRC-32C("123456789") = 0xE3069283.
        let b64 = |v: u32| base64::engine::general_purpose::STANDARD.encode(v.to_be_bytes());
        assert_eq!(checksum(Algorithm::Crc32, &[b"1234", b"56789"]), b64(0xCBF4_3926));
        assert_eq!(checksum(Algorithm::Crc32c, &[b"123456789"]), b64(0xE306_9283));
        assert_eq!(checksum(Algorithm::Crc32, &[]), "AAAAAA==");
        assert_eq!(checksum(Algorithm::Sha1, &[b"abc"]), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
        // Long enough for the vectorised path, and split unevenly.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (a, b) = data.split_at(33_333);
        assert_eq!(
            checksum(Algorithm::Crc32, &[a, b]),
            b64(crc32_bitwise(&data, 0xEDB8_8320))
        );
        assert_eq!(
            checksum(Algorithm::Crc32c, &[a, b]),
            b64(crc32_bitwise(&data, 0x82F6_3B78))
        );
    }

    /// The textbook reflected CRC-32, one bit at a time: the reference the fast one must agree with.
    fn crc32_bitwise(data: &[u8], polynomial: u32) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ polynomial
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn names() {
        assert_eq!(
            Algorithm::from_header_name("X-Amz-Checksum-CRC32"),
            Some(Algorithm::Crc32)
        );
        assert_eq!(Algorithm::from_header_name("x-amz-checksum-crc64nvme"), None);
        assert_eq!(Algorithm::Crc32c.header_name(), "x-amz-checksum-crc32c");
    }
}

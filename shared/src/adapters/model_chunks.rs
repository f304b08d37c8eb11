//! The stored form of a model list on DynamoDB: JSON, deflated, cut into
//! chunks that each fit an item (DynamoDB caps an item at 400 KB).
//!
//! Deflate shrinks real catalogues (ids share long prefixes) about tenfold,
//! so an ordinary list, 1800 long ids included, is one chunk and one item:
//! reading it stays one `GetItem`. Only a list that does not compress below
//! [`CHUNK_BYTES`] spreads over more items, written in the same transaction.
//! [`MAX_CHUNKS`] chunks hold any list the domain keeps
//! ([`MAX_LIST_JSON_BYTES`](crate::domain::model::MAX_LIST_JSON_BYTES)) even
//! incompressible, and stay inside a transaction's 4 MB and 100 actions.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use crate::domain::ModelInfo;
use crate::ports::StoreError;

/// Bytes of compressed list per item, leaving room under the 400 KB item cap
/// for the keys and the other attributes.
pub const CHUNK_BYTES: usize = 350_000;

/// Most chunks a list may take: 2.8 MB compressed, under the 4 MB a
/// transaction may write with the credential beside it.
pub const MAX_CHUNKS: usize = 8;

/// Decompressing stops here, so a corrupt item cannot inflate without bound.
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// The list as compressed chunks: at least one, at most [`MAX_CHUNKS`].
pub fn encode(models: &[ModelInfo]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    serde_json::to_writer(&mut encoder, models).map_err(|e| StoreError::Internal(e.to_string()))?;
    encoder.flush().map_err(|e| StoreError::Internal(e.to_string()))?;
    let compressed = encoder.finish().map_err(|e| StoreError::Internal(e.to_string()))?;
    let chunks: Vec<Vec<u8>> = if compressed.is_empty() {
        vec![Vec::new()]
    } else {
        compressed.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect()
    };
    if chunks.len() > MAX_CHUNKS {
        return Err(StoreError::Internal(format!(
            "model list of {} models is over the stored cap ({} compressed bytes)",
            models.len(),
            compressed.len()
        )));
    }
    Ok(chunks)
}

/// The list from its chunks, in order.
pub fn decode(chunks: &[&[u8]]) -> Result<Vec<ModelInfo>, StoreError> {
    let compressed = chunks.concat();
    let mut json = Vec::new();
    DeflateDecoder::new(compressed.as_slice())
        .take(MAX_JSON_BYTES)
        .read_to_end(&mut json)
        .map_err(|e| StoreError::Internal(format!("unreadable model list: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Internal(format!("unreadable model list: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize, mut id: impl FnMut(usize) -> String) -> Vec<ModelInfo> {
        (0..n)
            .map(|i| ModelInfo {
                context_window: Some(131_072),
                owned_by: Some("someone".into()),
                ..ModelInfo::named(id(i), format!("Model {i}"))
            })
            .collect()
    }

    #[test]
    fn a_large_ordinary_catalogue_is_one_chunk() {
        let list = models(1800, |i| {
            format!("accounts/fireworks/models/{}-{i:05}", "long-model-name".repeat(12))
        });
        assert!(serde_json::to_vec(&list).unwrap().len() > 400_000);
        let chunks = encode(&list).unwrap();
        assert_eq!(chunks.len(), 1);
        let parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        assert_eq!(decode(&parts).unwrap(), list);
        assert_eq!(decode(&[&encode(&[]).unwrap()[0]]).unwrap(), vec![]);
    }

    #[test]
    fn an_incompressible_list_spreads_over_chunks_and_round_trips() {
        // Pseudo-random ids (xorshift): deflate cannot shrink them much.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let list = models(6000, |_| {
            (0..200)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'!' + (state % 90) as u8)
                })
                .collect()
        });
        let chunks = encode(&list).unwrap();
        assert!(chunks.len() > 1, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        let parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        assert_eq!(decode(&parts).unwrap(), list);
        assert!(decode(&parts[1..]).is_err(), "a missing chunk is noticed");
    }
}

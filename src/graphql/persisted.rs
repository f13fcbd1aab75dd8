//! Documents named by their SHA-256 hash: Apollo's automatic persisted
//! queries (a client sends the hash alone, and the document only when the
//! server answers `PERSISTED_QUERY_NOT_FOUND`), and trusted documents
//! (`--trusted-documents`: the server runs only the documents of a manifest,
//! the way production dashboards shut out ad-hoc queries).
//!
//! Resolving happens before the document is parsed, so a document from the
//! store goes through every limit like one sent in full.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_graphql::Request;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// Memory the automatic store may hold, weighed by the documents' text.
const STORE_BYTES: u64 = 8 * 1024 * 1024;

/// Where a request's document comes from when it is named by hash.
pub struct PersistedQueries {
    /// Documents clients registered by sending them with their hash.
    registered: moka::future::Cache<String, Arc<str>>,
    /// With `--trusted-documents`: the only documents that run, by hash.
    trusted: Option<Arc<HashMap<String, Arc<str>>>>,
}

/// `extensions.persistedQuery` of a request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersistedQuery {
    version: u32,
    sha256_hash: String,
}

/// A manifest of trusted documents: Apollo's persisted query manifest
/// (`{"format": "apollo-persisted-query-manifest", "operations": [{"id",
/// "body", …}]}`), or a plain object of hash → document (Relay's and
/// GraphQL Codegen's output).
#[derive(Deserialize)]
#[serde(untagged)]
enum Manifest {
    Apollo { operations: Vec<ManifestOperation> },
    Map(HashMap<String, String>),
}

#[derive(Deserialize)]
struct ManifestOperation {
    id: String,
    body: String,
}

impl PersistedQueries {
    pub fn new(trusted: Option<Arc<HashMap<String, Arc<str>>>>) -> PersistedQueries {
        let registered = moka::future::Cache::builder()
            .max_capacity(STORE_BYTES)
            .weigher(|hash: &String, query: &Arc<str>| {
                u32::try_from(hash.len() + query.len()).unwrap_or(u32::MAX)
            })
            .build();
        PersistedQueries {
            registered,
            trusted,
        }
    }

    /// Reads a manifest of trusted documents; every entry's hash is checked
    /// against its document, so a wrong manifest fails at start.
    pub fn read_manifest(path: &Path) -> Result<HashMap<String, Arc<str>>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|error| {
            format!(
                "{} is neither an Apollo persisted query manifest nor an object of hash to document: {error}",
                path.display()
            )
        })?;
        let entries: Vec<(String, String)> = match manifest {
            Manifest::Apollo { operations } => operations
                .into_iter()
                .map(|operation| (operation.id, operation.body))
                .collect(),
            Manifest::Map(documents) => documents.into_iter().collect(),
        };
        entries
            .into_iter()
            .map(|(hash, body)| {
                let hash = hash.to_ascii_lowercase();
                if sha256(&body) == hash {
                    Ok((hash, Arc::from(body)))
                } else {
                    Err(format!(
                        "{}: the document listed as {hash} has another SHA-256 hash",
                        path.display()
                    ))
                }
            })
            .collect()
    }

    /// Fills in `request.query` when the request names its document by hash,
    /// registers a document sent with its hash, and with trusted documents
    /// refuses any other.
    pub async fn resolve(&self, request: &mut Request) -> AppResult<()> {
        let named = match request.extensions.get("persistedQuery") {
            Some(value) => {
                let json = value.clone().into_json().unwrap_or_default();
                let named: PersistedQuery = serde_json::from_value(json).map_err(|_| {
                    AppError::BadUserInput(
                        "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}".into(),
                    )
                })?;
                if named.version != 1 {
                    return Err(AppError::BadUserInput(format!(
                        "Persisted query version {} is not supported; use version 1",
                        named.version
                    )));
                }
                Some(named.sha256_hash.to_ascii_lowercase())
            }
            None => None,
        };
        match (named, request.query.is_empty()) {
            (Some(hash), true) => {
                request.query = self.lookup(&hash).await?.to_string();
                Ok(())
            }
            (Some(hash), false) => {
                if sha256(&request.query) != hash {
                    return Err(AppError::BadUserInput(
                        "extensions.persistedQuery.sha256Hash is not the SHA-256 hash of the query"
                            .into(),
                    ));
                }
                match &self.trusted {
                    Some(_) => self.lookup(&hash).await.map(drop),
                    None => {
                        self.registered
                            .insert(hash, Arc::from(request.query.as_str()))
                            .await;
                        Ok(())
                    }
                }
            }
            (None, _) => match &self.trusted {
                Some(_) => self.lookup(&sha256(&request.query)).await.map(drop),
                None => Ok(()),
            },
        }
    }

    async fn lookup(&self, hash: &str) -> AppResult<Arc<str>> {
        match &self.trusted {
            Some(trusted) => trusted.get(hash).cloned().ok_or_else(|| {
                AppError::BadUserInput(
                    "This server runs only its trusted documents (--trusted-documents), and this is not one of them".into(),
                )
            }),
            None => self.registered.get(hash).await.ok_or_else(|| {
                AppError::PersistedQueryNotFound(
                    "PersistedQueryNotFound: send the query along with its hash".into(),
                )
            }),
        }
    }
}

/// A document's hash as clients compute it: SHA-256 of its text, in hex.
fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "{ viewer { email } }";

    fn named(hash: &str, query: &str) -> Request {
        let mut request = Request::new(query);
        let extensions = serde_json::json!({ "version": 1, "sha256Hash": hash });
        request.extensions.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(extensions).expect("json"),
        );
        request
    }

    #[tokio::test]
    async fn a_hash_alone_runs_once_its_document_was_sent_with_it() {
        let store = PersistedQueries::new(None);
        let hash = sha256(QUERY);
        let error = store
            .resolve(&mut named(&hash, ""))
            .await
            .expect_err("unknown");
        assert_eq!(error.code(), "PERSISTED_QUERY_NOT_FOUND");
        store
            .resolve(&mut named(&hash, QUERY))
            .await
            .expect("registered");
        let mut by_hash = named(&hash, "");
        store.resolve(&mut by_hash).await.expect("known");
        assert_eq!(by_hash.query, QUERY);
        let error = store
            .resolve(&mut named(&sha256("{ other }"), QUERY))
            .await
            .expect_err("mismatch");
        assert_eq!(error.code(), "BAD_USER_INPUT");
    }

    #[tokio::test]
    async fn with_trusted_documents_only_they_run() {
        let trusted = HashMap::from([(sha256(QUERY), Arc::from(QUERY))]);
        let store = PersistedQueries::new(Some(Arc::new(trusted)));
        store
            .resolve(&mut Request::new(QUERY))
            .await
            .expect("trusted text");
        let mut by_hash = named(&sha256(QUERY), "");
        store.resolve(&mut by_hash).await.expect("trusted hash");
        assert_eq!(by_hash.query, QUERY);
        let other = "{ projects { id } }";
        for mut request in [Request::new(other), named(&sha256(other), other)] {
            let error = store.resolve(&mut request).await.expect_err("untrusted");
            assert!(error.message().contains("--trusted-documents"));
        }
    }
}

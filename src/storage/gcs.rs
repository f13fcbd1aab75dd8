//! Specs in Google Cloud Storage, the production store, through the official
//! `google-cloud-storage` client over its JSON API. Every call has a deadline,
//! and transient failures (408, 429, 5xx, I/O) are retried by the crate's own
//! retry policy with exponential backoff.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;

use super::{PutOutcome, SpecStore, StoreError};

/// Specs are markdown; the content type lets the console and `gcloud storage
/// cat` show them as text.
const SPEC_CONTENT_TYPE: &str = "text/markdown; charset=utf-8";

/// Attempts per call, the first included. With the backoff below a dead
/// endpoint is reported after well under a second, not after minutes.
const ATTEMPTS: u32 = 4;

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct GcsOptions {
    pub bucket: String,
    /// Prepended to every key (without a trailing slash); empty for none.
    pub prefix: String,
    /// An emulator's URL: talks to it with anonymous credentials. `None`
    /// means Google Cloud Storage itself with Application Default Credentials.
    pub endpoint: Option<String>,
    /// Deadline of one store call, retries included.
    pub timeout: Duration,
}

pub struct GcsSpecStore {
    client: Storage,
    /// `projects/_/buckets/{bucket}`, the form the client expects.
    bucket: String,
    prefix: String,
    timeout: Duration,
}

impl GcsSpecStore {
    /// Builds the client. Nothing is sent yet: credentials are resolved and
    /// the bucket reached on first use, so a server starts during an outage
    /// and reports it on `/readyz`.
    pub async fn connect(options: GcsOptions) -> Result<GcsSpecStore, StoreError> {
        install_crypto_provider();
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(Duration::from_millis(100))
            .with_maximum_delay(Duration::from_secs(2))
            .with_scaling(2.0)
            .build()
            .map_err(|error| StoreError::Unavailable(format!("gcs backoff policy: {error}")))?;
        let retry = RetryableErrors
            .with_attempt_limit(ATTEMPTS)
            .with_time_limit(options.timeout);
        let mut builder = Storage::builder()
            .with_retry_policy(retry)
            .with_backoff_policy(backoff)
            // Only the JSON API is used; one idle gRPC channel is plenty.
            .with_grpc_subchannel_count(1);
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
        }
        let client = builder.build().await.map_err(|error| {
            StoreError::Unavailable(format!("cannot set up the gcs client: {error}"))
        })?;
        Ok(GcsSpecStore {
            client,
            bucket: format!("projects/_/buckets/{}", options.bucket),
            prefix: options.prefix.trim_matches('/').to_owned(),
            timeout: options.timeout,
        })
    }

    fn object_name(&self, key: &str) -> String {
        super::in_prefix(&self.prefix, key)
    }

    /// Runs one call under the deadline. The client's HTTP attempts have no
    /// timeout of their own, so a store that accepts connections and never
    /// answers would otherwise hold a request forever.
    async fn within<T>(
        &self,
        what: &str,
        call: impl Future<Output = google_cloud_storage::Result<T>>,
    ) -> Result<google_cloud_storage::Result<T>, StoreError> {
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            StoreError::Unavailable(format!("gcs {what} timed out after {:?}", self.timeout))
        })
    }

    async fn read(&self, object: &str) -> google_cloud_storage::Result<Bytes> {
        let mut response = self.client.read_object(&self.bucket, object).send().await?;
        let mut chunks = Vec::new();
        while let Some(chunk) = response.next().await.transpose()? {
            chunks.push(chunk);
        }
        // Specs are small: almost always one chunk, which is passed on as is.
        Ok(match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => Bytes::from(chunks.concat()),
        })
    }
}

/// The crate is built without its default crypto provider (aws-lc) so that
/// only ring, which sqlx already brings, is compiled; rustls then needs ring
/// installed as the process default before the first client is built. Later
/// calls find it installed and change nothing.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// 404 is an object that is not there; everything else (transport errors,
/// timeouts, 5xx after retries, refused credentials) means the store cannot
/// serve us right now.
fn classify(what: &str, object: &str, error: &google_cloud_storage::Error) -> StoreError {
    if error.http_status_code() == Some(404) {
        StoreError::Missing(object.to_owned())
    } else {
        StoreError::Unavailable(format!("gcs {what} of {object} failed: {error}"))
    }
}

#[async_trait]
impl SpecStore for GcsSpecStore {
    /// A single-shot upload with the precondition "no such object yet"
    /// (`ifGenerationMatch=0`): an identical spec already stored is refused
    /// with 412 and left untouched, and a retried upload whose first attempt
    /// did land cannot write twice.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let object = self.object_name(key);
        let write = self
            .client
            .write_object(&self.bucket, &object, Bytes::copy_from_slice(bytes))
            .set_if_generation_match(0)
            .set_content_type(SPEC_CONTENT_TYPE)
            // Always one request: a spec is at most --max-spec-bytes, and a
            // resumable session would cost a second round trip for nothing.
            .with_resumable_upload_threshold(usize::MAX)
            .send_buffered();
        match self.within("write", write).await? {
            Ok(_) => Ok(PutOutcome::Written),
            Err(error) if error.http_status_code() == Some(412) => Ok(PutOutcome::AlreadyPresent),
            Err(error) => match classify("write", &object, &error) {
                // A write cannot miss its object; a 404 means the bucket is gone.
                StoreError::Missing(_) => Err(StoreError::Unavailable(format!(
                    "gcs write of {object} failed: {error}"
                ))),
                unavailable => Err(unavailable),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = self.object_name(key);
        self.within("read", self.read(&object))
            .await?
            .map_err(|error| match classify("read", &object, &error) {
                StoreError::Missing(_) => StoreError::Missing(key.to_owned()),
                unavailable => unavailable,
            })
    }

    /// The probe object, since the JSON calls for bucket metadata are not
    /// in this client (it reaches them over gRPC only).
    async fn check(&self) -> Result<(), StoreError> {
        super::check_with_probe(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(prefix: &str) -> GcsSpecStore {
        GcsSpecStore::connect(GcsOptions {
            bucket: "bucket".into(),
            prefix: prefix.into(),
            endpoint: Some("http://127.0.0.1:1/".into()),
            timeout: Duration::from_secs(1),
        })
        .await
        .expect("client")
    }

    #[tokio::test]
    async fn keys_live_under_the_prefix() {
        assert_eq!(store("specs/").await.object_name("a/b.md"), "specs/a/b.md");
        assert_eq!(store("").await.object_name("a/b.md"), "a/b.md");
    }

    /// The emulator takes an object's content type from the media part, not
    /// from the metadata as GCS does, so the request itself is checked here.
    #[tokio::test]
    async fn uploads_are_conditional_single_shot_and_typed_as_markdown() {
        let (endpoint, capture) = crate::storage::first_request_to("# the spec").await;
        let store = GcsSpecStore::connect(GcsOptions {
            bucket: "bucket".into(),
            prefix: "specs".into(),
            endpoint: Some(endpoint),
            timeout: Duration::from_secs(5),
        })
        .await
        .expect("client");

        let outcome = store.put("a.md", b"# the spec").await;

        let request = capture.await.expect("captured request");
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))));
        assert!(
            request.starts_with("POST /upload/storage/v1/b/bucket/o?"),
            "{request}"
        );
        assert!(request.contains("uploadType=multipart"), "{request}");
        assert!(request.contains("ifGenerationMatch=0"), "{request}");
        assert!(request.contains("name=specs%2Fa.md"), "{request}");
        assert!(
            request.contains(r#""contentType":"text/markdown; charset=utf-8""#),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable_not_missing() {
        let store = store("specs").await;
        assert!(matches!(
            store.get("a.md").await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.put("a.md", b"x").await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.check().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}

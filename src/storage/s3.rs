//! Specs in Amazon S3 or an S3-compatible store, through the official AWS SDK.
//! Credentials and region come from the standard AWS chain (environment,
//! shared profiles, web identity, container and instance roles); every call
//! has a deadline, and transient failures (throttling, 5xx, I/O) are retried by
//! the SDK's standard retry policy with exponential backoff.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;

use super::{PutOutcome, SpecStore, StoreError};

/// Specs are markdown; the content type lets the console and `aws s3 cp -` show
/// them as text.
const SPEC_CONTENT_TYPE: &str = "text/markdown; charset=utf-8";

/// Attempts per call, the first included, with the same backoff as the GCS
/// store: a dead endpoint is reported after well under a second.
const ATTEMPTS: u32 = 4;

/// The region S3-compatible stores expect when none is configured: most
/// ignore it, and the rest (MinIO, moto) default to it themselves.
const COMPATIBLE_STORE_REGION: &str = "us-east-1";

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Prepended to every key (without a trailing slash); empty for none.
    pub prefix: String,
    /// An S3-compatible store or emulator, addressed path-style
    /// (`ENDPOINT/BUCKET/KEY`). `None` means Amazon S3 itself.
    pub endpoint: Option<String>,
    /// Overrides the region of the AWS chain.
    pub region: Option<String>,
    /// Deadline of one store call, retries included.
    pub timeout: Duration,
}

pub struct S3SpecStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    timeout: Duration,
}

impl S3SpecStore {
    /// Resolves the region now (a missing one is a configuration error worth
    /// refusing to start over) but credentials and the bucket only on first
    /// use, so a server starts during an outage and reports it on `/readyz`.
    pub async fn connect(options: S3Options) -> Result<S3SpecStore, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(2)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(options.timeout)
                    .build(),
            );
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let config = loader.load().await;
        let region = config.region().cloned().or_else(|| {
            options
                .endpoint
                .is_some()
                .then(|| Region::from_static(COMPATIBLE_STORE_REGION))
        });
        let Some(region) = region else {
            return Err(StoreError::Unavailable(
                "no AWS region for the s3 store: set AWS_REGION, a region in the AWS profile, or --s3-region".into(),
            ));
        };
        let config = config.into_builder().region(region).build();
        Ok(S3SpecStore::with_config(&config, options))
    }

    /// The client for an already resolved configuration. With an endpoint the
    /// store is S3-compatible: path-style addressing, which emulators and
    /// most such stores need, and checksums only where the API requires
    /// them, since many of those stores reject the SDK's default CRC headers.
    fn with_config(config: &aws_config::SdkConfig, options: S3Options) -> S3SpecStore {
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .endpoint_url(endpoint.trim_end_matches('/'))
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        S3SpecStore {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: options.bucket,
            prefix: options.prefix.trim_matches('/').to_owned(),
            timeout: options.timeout,
        }
    }

    fn object_key(&self, key: &str) -> String {
        super::in_prefix(&self.prefix, key)
    }

    /// Runs one call, reading its body included, under the deadline: the
    /// SDK's operation timeout ends when the response starts, and a store
    /// that stalls mid-body would otherwise hold a request.
    async fn within<T>(
        &self,
        what: &str,
        object: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "s3 {what} of {object} timed out after {:?}",
                    self.timeout
                ))
            })?
    }

    async fn read(&self, object: &str) -> Result<Bytes, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|error| {
                let missing = error
                    .as_service_error()
                    .is_some_and(|error| error.is_no_such_key());
                if missing {
                    StoreError::Missing(object.to_owned())
                } else {
                    unavailable("read", object, &error)
                }
            })?;
        let body = output.body.collect().await.map_err(|error| {
            StoreError::Unavailable(format!(
                "s3 read of {object} failed mid-body: {}",
                DisplayErrorContext(&error)
            ))
        })?;
        Ok(body.into_bytes())
    }

    async fn write(&self, object: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .if_none_match("*")
            .content_type(SPEC_CONTENT_TYPE)
            .body(ByteStream::from(Bytes::copy_from_slice(bytes)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|response| response.status().as_u16() == 412) =>
            {
                Ok(PutOutcome::AlreadyPresent)
            }
            // Everything else, 404 NoSuchBucket and the 409 S3 answers while
            // another conditional write of the key is in flight included, is
            // worth retrying later.
            Err(error) => Err(unavailable("write", object, &error)),
        }
    }
}

/// Transport errors, timeouts, refused credentials, a missing bucket and 5xx
/// after retries: the store cannot serve us right now.
fn unavailable<E, R>(what: &str, object: &str, error: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!(
        "s3 {what} of {object} failed: {}",
        DisplayErrorContext(error)
    ))
}

#[async_trait]
impl SpecStore for S3SpecStore {
    /// A single `PutObject` with the precondition "no such object yet"
    /// (`If-None-Match: *`): an identical spec already stored is refused with
    /// 412 and left untouched, and a retried upload whose first attempt did
    /// land cannot write twice. Stores without conditional writes overwrite
    /// the object with the very same bytes, which is harmless.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let object = self.object_key(key);
        self.within("write", &object, self.write(&object, bytes))
            .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = self.object_key(key);
        self.within("read", &object, self.read(&object))
            .await
            .map_err(|error| match error {
                StoreError::Missing(_) => StoreError::Missing(key.to_owned()),
                unavailable => unavailable,
            })
    }

    /// The probe object rather than `HeadBucket`, which would need
    /// `s3:ListBucket` for a check and nothing else.
    async fn check(&self) -> Result<(), StoreError> {
        super::check_with_probe(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

    /// A store with static credentials, so that the tests depend on nothing
    /// in the environment.
    fn store(prefix: &str, endpoint: &str) -> S3SpecStore {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("eu-central-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "tests",
            )))
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .build();
        S3SpecStore::with_config(
            &config,
            S3Options {
                bucket: "bucket".into(),
                prefix: prefix.into(),
                endpoint: Some(endpoint.into()),
                region: None,
                timeout: Duration::from_secs(5),
            },
        )
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let endpoint = "http://127.0.0.1:1/";
        assert_eq!(
            store("specs/", endpoint).object_key("a/b.md"),
            "specs/a/b.md"
        );
        assert_eq!(store("", endpoint).object_key("a/b.md"), "a/b.md");
    }

    /// What goes on the wire, which an emulator would accept either way:
    /// path-style, conditional, typed as markdown, without checksum headers.
    #[tokio::test]
    async fn uploads_are_conditional_path_style_and_typed_as_markdown() {
        let (endpoint, capture) = crate::storage::first_request_to("# the spec").await;

        let outcome = store("specs", &endpoint).put("a.md", b"# the spec").await;

        let request = capture.await.expect("captured request").to_lowercase();
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))));
        assert!(request.starts_with("put /bucket/specs/a.md"), "{request}");
        assert!(request.contains("\r\nif-none-match: *\r\n"), "{request}");
        assert!(
            request.contains("\r\ncontent-type: text/markdown; charset=utf-8\r\n"),
            "{request}"
        );
        assert!(!request.contains("x-amz-checksum"), "{request}");
        assert!(
            request.contains("/eu-central-1/s3/aws4_request"),
            "signed for the configured region: {request}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable_not_missing() {
        let store = store("specs", "http://127.0.0.1:1");
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

    #[tokio::test]
    async fn a_store_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let mut store = store("specs", &endpoint);
        store.timeout = Duration::from_millis(300);
        // Connections are accepted by the kernel's backlog and never answered.
        let Err(StoreError::Unavailable(reason)) = store.get("a.md").await else {
            panic!("a hung store must be unavailable");
        };
        assert!(reason.contains("timed out"), "{reason}");
        drop(listener);
    }
}

//! The deployed config as one S3 object (`aws` feature), decision 0025: the
//! Lambda functions read it (with a TTL cache, [`crate::serverless`]) and
//! `memory-connector deploy-config` writes it. S3 rather than SSM Parameter
//! Store: a parameter holds 8 KB at most, a config of thousands of
//! connectors is megabytes.
//!
//! The object is the config file's own text, `${VAR}` references and all:
//! secrets stay in Secrets Manager and are resolved by the functions. Reads
//! are conditional (`If-None-Match`), so an unchanged config costs a 304;
//! writes are conditional too (`If-Match` the version that was read, or
//! `If-None-Match: *` for the first), so two deploys at once cannot
//! silently overwrite each other.

use crate::aws::record::CallRecorder;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

/// The largest config object read (a 10,000-connector config is a few MB).
pub const MAX_CONFIG_BYTES: i64 = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigStoreError {
    #[error("{uri:?} is not an S3 location; expected s3://BUCKET/KEY")]
    BadUri { uri: String },
    #[error("s3://{bucket}/{key}: {detail}")]
    S3 { bucket: String, key: String, detail: String },
    #[error(
        "s3://{bucket}/{key} changed while this deploy ran (another deploy?); nothing was written: run the command again"
    )]
    Conflict { bucket: String, key: String },
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The version the reader has is still the current one.
    NotModified,
    /// No object at that key (no config deployed yet).
    Missing,
    Found {
        text: String,
        etag: String,
    },
}

/// One S3 object holding the config.
#[derive(Debug, Clone)]
pub struct ConfigObject {
    client: Client,
    bucket: String,
    key: String,
}

/// `s3://bucket/key` -> (bucket, key).
pub fn parse_uri(uri: &str) -> Result<(String, String), ConfigStoreError> {
    let bad = || ConfigStoreError::BadUri { uri: uri.to_owned() };
    let rest = uri.trim().strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// An S3 client: path-style addressing when the endpoint is overridden
/// (emulators answer on one host name).
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    recorded_client(sdk, None)
}

/// [`client`], recording its calls when `recorder` is given (a function's
/// config reads: the template check).
pub fn recorded_client(sdk: &aws_config::SdkConfig, recorder: Option<&CallRecorder>) -> Client {
    let overridden = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let mut config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(overridden);
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder.clone());
    }
    Client::from_conf(config.build())
}

impl ConfigObject {
    pub fn new(client: Client, uri: &str) -> Result<Self, ConfigStoreError> {
        let (bucket, key) = parse_uri(uri)?;
        Ok(Self { client, bucket, key })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn fail(&self, operation: &str, detail: String) -> ConfigStoreError {
        ConfigStoreError::S3 {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            detail: format!("{operation}: {detail}"),
        }
    }

    /// The object's text; with `known` (an ETag already read), `NotModified`
    /// while it is still that version.
    pub async fn fetch(&self, known: Option<&str>) -> Result<Fetched, ConfigStoreError> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_if_none_match(known.map(str::to_owned))
            .send()
            .await;
        let got = match sent {
            Ok(got) => got,
            Err(e) => {
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) {
                    return Ok(Fetched::NotModified);
                }
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Ok(Fetched::Missing);
                }
                return Err(self.fail("GetObject", crate::errors::error_chain(&e)));
            }
        };
        if got.content_length.unwrap_or(0) > MAX_CONFIG_BYTES {
            return Err(self.fail(
                "GetObject",
                format!("{} bytes; a config is read up to {MAX_CONFIG_BYTES} bytes", got.content_length.unwrap_or(0)),
            ));
        }
        let etag = got.e_tag.clone().unwrap_or_default();
        let bytes = got.body.collect().await.map_err(|e| self.fail("GetObject body", e.to_string()))?.into_bytes();
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| self.fail("GetObject", "the config is not UTF-8 text".into()))?;
        Ok(Fetched::Found { text, etag })
    }

    /// Writes `text` if the object is still at `expected` (its ETag; `None`:
    /// only if there is no object yet). Answers the new ETag.
    pub async fn put(&self, text: &str, expected: Option<&str>) -> Result<String, ConfigStoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/yaml")
            .body(ByteStream::from(text.as_bytes().to_vec()));
        let request = match expected {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(put) => Ok(put.e_tag.unwrap_or_default()),
            Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) => {
                Err(ConfigStoreError::Conflict { bucket: self.bucket.clone(), key: self.key.clone() })
            }
            Err(e) => Err(self.fail("PutObject", crate::errors::error_chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(parse_uri("s3://b/config.yaml").unwrap(), ("b".into(), "config.yaml".into()));
        assert_eq!(parse_uri(" s3://b/dir/c.yaml ").unwrap(), ("b".into(), "dir/c.yaml".into()));
        for bad in ["b/key", "s3://b", "s3:///key", "s3://b/", "https://b/key"] {
            assert!(matches!(parse_uri(bad), Err(ConfigStoreError::BadUri { .. })), "{bad}");
        }
    }

    async fn object(test: &str) -> Option<ConfigObject> {
        crate::aws::emulator_endpoint("AWS_ENDPOINT_URL", test)?;
        let s3 = client(&crate::aws::sdk_config().await);
        let bucket = format!("config-{:08x}", fastrand::u32(..));
        s3.create_bucket().bucket(&bucket).send().await.expect("create bucket in moto");
        Some(ConfigObject::new(s3, &format!("s3://{bucket}/memory-connector/config.yaml")).expect("uri"))
    }

    /// Against moto's S3: a missing object, a first write, a conditional
    /// read that costs nothing while unchanged, and a write refused because
    /// someone else wrote in between.
    #[tokio::test]
    async fn conditional_reads_and_writes() {
        let Some(object) = object("config_store::conditional_reads_and_writes").await else { return };
        assert_eq!(object.fetch(None).await.unwrap(), Fetched::Missing);
        let first = object.put("connectors: []\n", None).await.unwrap();
        assert!(!first.is_empty());
        let Fetched::Found { text, etag } = object.fetch(None).await.unwrap() else { panic!("written") };
        assert_eq!((text.as_str(), etag.as_str()), ("connectors: []\n", first.as_str()));
        assert_eq!(object.fetch(Some(&etag)).await.unwrap(), Fetched::NotModified);
        assert!(matches!(object.put("again\n", None).await, Err(ConfigStoreError::Conflict { .. })), "exists already");
        let second = object.put("v2\n", Some(&first)).await.unwrap();
        assert_ne!(second, first);
        assert!(
            matches!(object.put("v3\n", Some(&first)).await, Err(ConfigStoreError::Conflict { .. })),
            "the version read is not the current one any more"
        );
        let Fetched::Found { text, .. } = object.fetch(Some(&first)).await.unwrap() else { panic!("changed") };
        assert_eq!(text, "v2\n");
    }
}

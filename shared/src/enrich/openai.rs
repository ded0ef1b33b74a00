//! OpenAI-compatible services: `POST {url}/audio/transcriptions` (multipart
//! file + model) and `POST {url}/chat/completions` with an image input (a
//! base64 data URL). Works with OpenAI itself and with local servers that
//! speak the same API (e.g. faster-whisper servers, vLLM, Ollama).

use super::{SERVICE_RETRY, ServiceError};
use crate::config::{TranscriptionConfig, VisionConfig};
use crate::http;
use crate::memory_api::Media;
use crate::retry;
use crate::secrets::Secret;
use base64::Engine as _;
use serde::Deserialize;
use std::time::Duration;

/// Whole-request bounds (uploading 25 MB of audio and transcribing it takes a while).
pub const TRANSCRIPTION_TIMEOUT: Duration = Duration::from_secs(180);
pub const VISION_TIMEOUT: Duration = Duration::from_secs(90);

/// The largest answer read: a transcript of 25 MB of audio is well under it.
pub const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;

/// What the vision model is asked. Changing it changes documents only for
/// photos not yet described (descriptions are cached per memory).
const DESCRIBE_PROMPT: &str = "Describe this photo for a personal memory archive in two to four factual sentences: \
     the scene, people (without guessing identities), notable objects, visible text, and the setting. No preamble.";

/// One OpenAI-compatible endpoint with its model and key.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    url: String,
    /// `url` as messages show it (a password masked).
    shown: String,
    model: String,
    api_key: Option<Secret>,
}

impl OpenAiClient {
    pub fn transcription(config: &TranscriptionConfig) -> Result<Self, ServiceError> {
        Self::new(&config.url, &config.model, config.api_key.clone(), TRANSCRIPTION_TIMEOUT)
    }

    pub fn vision(config: &VisionConfig) -> Result<Self, ServiceError> {
        Self::new(&config.url, &config.model, config.api_key.clone(), VISION_TIMEOUT)
    }

    fn new(url: &str, model: &str, api_key: Option<Secret>, timeout: Duration) -> Result<Self, ServiceError> {
        let url = url.trim().trim_end_matches('/').to_owned();
        let http =
            http::client_builder(timeout, false).build().map_err(|e| ServiceError::Client(http::error_chain(&e)))?;
        Ok(Self {
            http,
            shown: http::shown_url_text(&url),
            url,
            model: model.to_owned(),
            api_key: api_key.filter(|k| !k.is_empty()),
        })
    }

    /// The text spoken in `audio`.
    pub async fn transcribe(&self, audio: &Media) -> Result<String, ServiceError> {
        let path = "/audio/transcriptions";
        // OpenAI reads the format from the file name's extension.
        let file_name = format!("audio.{}", audio_extension(&audio.content_type));
        let body = self
            .send(path, |request| {
                let part = reqwest::multipart::Part::bytes(audio.bytes.clone())
                    .file_name(file_name.clone())
                    .mime_str(&audio.content_type)
                    .map_err(|e| ServiceError::Client(e.to_string()))?;
                let form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.model.clone())
                    .text("response_format", "json");
                Ok(request.multipart(form))
            })
            .await?;
        #[derive(Deserialize)]
        struct Transcription {
            text: String,
        }
        let parsed: Transcription = serde_json::from_slice(&body).map_err(|e| ServiceError::BadAnswer {
            url: format!("{}{path}", self.shown),
            reason: e.to_string(),
            body: self.excerpt(&body),
        })?;
        Ok(parsed.text)
    }

    /// A short description of the photo in `image`.
    pub async fn describe(&self, image: &Media) -> Result<String, ServiceError> {
        let path = "/chat/completions";
        let data_url = format!(
            "data:{};base64,{}",
            image.content_type,
            base64::engine::general_purpose::STANDARD.encode(&image.bytes)
        );
        let request = serde_json::json!({
            "model": self.model,
            "temperature": 0,
            "max_tokens": 300,
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "text", "text": DESCRIBE_PROMPT},
                    {"type": "image_url", "image_url": {"url": data_url}}
                ]
            }]
        });
        let body = self.send(path, |post| Ok(post.json(&request))).await?;
        #[derive(Deserialize)]
        struct Completion {
            choices: Vec<Choice>,
        }
        #[derive(Deserialize)]
        struct Choice {
            message: Message,
        }
        #[derive(Deserialize)]
        struct Message {
            content: Option<String>,
        }
        let bad = |reason: String| ServiceError::BadAnswer {
            url: format!("{}{path}", self.shown),
            reason,
            body: self.excerpt(&body),
        };
        let parsed: Completion = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| bad("no choices[0].message.content".into()))
    }

    /// `POST {url}{path}`, the body set by `build` (called per attempt: a
    /// multipart body cannot be sent twice), retried as [`SERVICE_RETRY`] says.
    async fn send(
        &self,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ServiceError>,
    ) -> Result<Vec<u8>, ServiceError> {
        let shown = format!("{}{path}", self.shown);
        let attempt = || async {
            let mut request = build(self.http.post(format!("{}{path}", self.url)))?;
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key.expose());
            }
            let response = request.send().await.map_err(|e| ServiceError::transport(&shown, e))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let retry_after = http::retry_after(response.headers());
                let body = http::read_error_body(response).await;
                return Err(ServiceError::Http { url: shown.clone(), status, body: self.excerpt(&body), retry_after });
            }
            ServiceError::body(&shown, response, MAX_ANSWER_BYTES).await
        };
        let retried = retry::retrying(SERVICE_RETRY, attempt, |error: &ServiceError, wait, _| {
            tracing::debug!(%error, wait_ms = wait.as_millis() as u64, "service call failed; retrying");
        })
        .await;
        retried.result
    }

    fn excerpt(&self, body: &[u8]) -> String {
        http::excerpt(body, &self.api_key.iter().collect::<Vec<_>>())
    }
}

fn audio_extension(content_type: &str) -> &'static str {
    match content_type {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/webm" => "webm",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/flac" | "audio/x-flac" => "flac",
        _ => "bin",
    }
}

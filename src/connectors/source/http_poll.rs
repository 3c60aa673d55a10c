//! The http-poll-source kind's origin: an HTTP API read page by page. The request carries the
//! stored cursor; the manifest's jq programs find the page's records and the cursor after it.
//! An API without a moving cursor (it answers `null`) is read again from the same cursor,
//! skipping the records already published, so nothing is published twice in order.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::position::Position;
use super::{Page, Record};
use crate::connectors::effect::CallError;
use crate::connectors::http_sink::{read_answer, transport_error};
use crate::connectors::manifest::PollTarget;

pub struct HttpPoll {
    client: reqwest::Client,
    target: PollTarget,
    bearer: Option<String>,
}

fn mapping_error(message: String) -> CallError {
    CallError {
        class: "Mapping".to_owned(),
        message,
        status: None,
        retryable: false,
    }
}

/// A cursor as the API gave it: text, or a number as text; `null` for none.
fn cursor_text(value: &Value) -> Result<Option<String>, CallError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if !text.is_empty() => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        other => Err(mapping_error(format!(
            "poll.next_cursor must give text, a number or null, not {other}"
        ))),
    }
}

impl HttpPoll {
    /// Reads the bearer token's secret now.
    pub fn new(target: &PollTarget) -> Result<Self, String> {
        let bearer = target
            .bearer
            .as_ref()
            .map(|secret| secret.read().map_err(|e| format!("poll.auth: {e}")))
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            target: target.clone(),
            bearer,
        })
    }

    /// The page at `at`, without the records of it already published.
    pub async fn fetch(&self, at: &Position, batch: u32) -> Result<Page, CallError> {
        let mut request = self.client.get(&self.target.url);
        if let Some(cursor) = &at.cursor {
            request = request.query(&[(self.target.cursor_param.as_str(), cursor.as_str())]);
        }
        if let Some(limit) = &self.target.limit_param {
            // Records of this page already published are read again and skipped: ask for
            // them as well as a batch of new ones.
            let wanted = u64::from(batch) + u64::try_from(at.skip).unwrap_or(0);
            request = request.query(&[(limit.as_str(), wanted)]);
        }
        for (name, value) in &self.target.headers {
            request = request.header(name, value);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let answer = match request.send().await {
            Ok(response) => read_answer(response, Instant::now(), &[]).await?,
            Err(error) => return Err(transport_error(error)),
        };
        let records = match self.target.records.apply(&answer.body) {
            Ok(Value::Array(records)) => records,
            Ok(Value::Null) => Vec::new(),
            Ok(other) => {
                return Err(mapping_error(format!(
                    "poll.records must give an array of records, not {}",
                    kind_of(&other)
                )));
            }
            Err(error) => return Err(mapping_error(format!("poll.records: {error}"))),
        };
        let next = self
            .target
            .next_cursor
            .apply(&answer.body)
            .map_err(|e| mapping_error(format!("poll.next_cursor: {e}")))?;
        let next = cursor_text(&next)?;
        let total = records.len();
        let skip = usize::try_from(at.skip).unwrap_or(0);
        let records = records
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(index, value)| Record {
                value,
                after: Position {
                    cursor: at.cursor.clone(),
                    skip: i32::try_from(index + 1).unwrap_or(i32::MAX),
                },
            })
            .collect();
        // A new cursor ends the page; the same one (or none) keeps counting within it.
        let end = next
            .filter(|next| at.cursor.as_ref() != Some(next))
            .map(|cursor| Position {
                cursor: Some(cursor),
                skip: 0,
            });
        let more = end.is_some() && total >= usize::try_from(batch).unwrap_or(usize::MAX) + skip;
        Ok(Page { records, end, more })
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_text_numbers_or_none() {
        assert_eq!(
            cursor_text(&Value::from("abc")).unwrap(),
            Some("abc".to_owned())
        );
        assert_eq!(
            cursor_text(&Value::from(42)).unwrap(),
            Some("42".to_owned())
        );
        assert_eq!(cursor_text(&Value::Null).unwrap(), None);
        let error = cursor_text(&Value::from(true)).unwrap_err();
        assert!(!error.retryable);
        assert!(error.message.contains("poll.next_cursor"), "{error:?}");
    }
}

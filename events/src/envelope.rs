//! Building the [`EventEnvelope`] a producer writes to its outbox, and reading
//! the payload back out of it in a consumer.

use std::sync::OnceLock;

use prost::Message as _;
use shopmesh_proto::shop::events::v1::EventEnvelope;

use shopmesh_platform::tracing_context::CallContext;

/// Prefix of every payload's type URL (`google.protobuf.Any` convention).
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

static PRODUCER: OnceLock<String> = OnceLock::new();

/// Names the binary that produces events (`producer` in every envelope). The
/// service runtime calls it with the binary name at start; without it, the
/// executable's file name is used.
pub fn set_producer_name(name: &str) {
    let _ = PRODUCER.set(name.to_owned());
}

fn producer_name() -> &'static str {
    PRODUCER.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_default()
    })
}

/// Why an envelope or its payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an EventEnvelope: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("envelope has no event_id")]
    MissingEventId,
    #[error("envelope has no payload")]
    MissingPayload,
    #[error("payload is {actual}, not {expected}")]
    WrongType { expected: String, actual: String },
}

/// A new event: the [`EventEnvelope`] to enqueue, built from its payload.
/// Dereferences to the envelope, so `&event` is what [`enqueue`](crate::enqueue) takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Event(EventEnvelope);

impl Event {
    /// The envelope of `payload`, an event of the aggregate `aggregate_type`
    /// (`"order"`, `"stock"`...) with id `aggregate_id` (also the record key).
    ///
    /// Takes a fresh UUIDv7 event id, the current time, the producer name and the
    /// request id and W3C trace context of the call being served (or event being
    /// handled), so consumers continue the same trace.
    pub fn new<M: prost::Name>(
        payload: &M,
        aggregate_type: &str,
        aggregate_id: impl Into<String>,
    ) -> Self {
        let (traceparent, tracestate) = CallContext::current_trace();
        let request_id = CallContext::current()
            .map(|c| c.request_id)
            .unwrap_or_default();
        let event_type = M::full_name();
        Self(EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            aggregate_id: aggregate_id.into(),
            aggregate_type: aggregate_type.to_owned(),
            payload: Some(prost_types::Any {
                type_url: format!("{TYPE_URL_PREFIX}{event_type}"),
                value: payload.encode_to_vec(),
            }),
            event_type,
            traceparent,
            tracestate,
            request_id,
            producer: producer_name().to_owned(),
        })
    }

    /// Sets `occurred_at` (default: when the event was built), e.g. to the
    /// timestamp the state change stored.
    pub fn occurred_at(mut self, at: std::time::SystemTime) -> Self {
        self.0.occurred_at = Some(prost_types::Timestamp::from(at));
        self
    }

    pub fn envelope(&self) -> &EventEnvelope {
        &self.0
    }

    pub fn into_envelope(self) -> EventEnvelope {
        self.0
    }
}

impl std::ops::Deref for Event {
    type Target = EventEnvelope;
    fn deref(&self) -> &EventEnvelope {
        &self.0
    }
}

impl From<Event> for EventEnvelope {
    fn from(event: Event) -> Self {
        event.0
    }
}

/// Reading envelopes: decoding a record value and its payload.
pub trait EnvelopeExt: Sized {
    /// Decodes a record value; checks that it carries an event id and a payload.
    fn decode_record(value: &[u8]) -> Result<Self, EnvelopeError>;
    /// Whether the payload is a `T`.
    fn is<T: prost::Name>(&self) -> bool;
    /// The payload as a `T`; an error when it is another type.
    fn payload_as<T: prost::Name + Default>(&self) -> Result<T, EnvelopeError>;
    /// The event id as a UUID.
    fn event_uuid(&self) -> Result<uuid::Uuid, EnvelopeError>;
}

impl EnvelopeExt for EventEnvelope {
    fn decode_record(value: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope = EventEnvelope::decode(value)?;
        envelope.event_uuid()?;
        if envelope.payload.is_none() {
            return Err(EnvelopeError::MissingPayload);
        }
        Ok(envelope)
    }

    fn is<T: prost::Name>(&self) -> bool {
        self.payload
            .as_ref()
            .is_some_and(|any| any.type_url == format!("{TYPE_URL_PREFIX}{}", T::full_name()))
    }

    fn payload_as<T: prost::Name + Default>(&self) -> Result<T, EnvelopeError> {
        let any = self.payload.as_ref().ok_or(EnvelopeError::MissingPayload)?;
        let expected = format!("{TYPE_URL_PREFIX}{}", T::full_name());
        if any.type_url != expected {
            return Err(EnvelopeError::WrongType {
                expected,
                actual: any.type_url.clone(),
            });
        }
        Ok(T::decode(any.value.as_slice())?)
    }

    fn event_uuid(&self) -> Result<uuid::Uuid, EnvelopeError> {
        uuid::Uuid::parse_str(&self.event_id).map_err(|_| EnvelopeError::MissingEventId)
    }
}

#[cfg(test)]
mod tests {
    use shopmesh_proto::shop::events::v1::{OrderCreated, UserRegistered};

    use super::*;

    #[tokio::test]
    async fn an_envelope_round_trips_and_checks_its_payload_type() {
        let payload = UserRegistered {
            user_id: "u-1".to_owned(),
            ..Default::default()
        };
        let context = CallContext {
            request_id: "req-1".to_owned(),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            tracestate: String::new(),
        };
        let envelope = context
            .clone()
            .scope(async { Event::new(&payload, "user", "u-1") })
            .await;
        assert_eq!(envelope.event_type, "shop.events.v1.UserRegistered");
        assert_eq!(envelope.request_id, "req-1");
        assert_eq!(envelope.traceparent, context.traceparent);
        assert_eq!(
            uuid::Uuid::parse_str(&envelope.event_id)
                .unwrap()
                .get_version_num(),
            7
        );
        let decoded = EventEnvelope::decode_record(&envelope.encode_to_vec()).unwrap();
        assert_eq!(&decoded, envelope.envelope());
        assert!(decoded.is::<UserRegistered>());
        assert_eq!(decoded.payload_as::<UserRegistered>().unwrap(), payload);
        assert!(matches!(
            decoded.payload_as::<OrderCreated>(),
            Err(EnvelopeError::WrongType { .. })
        ));
        assert!(EventEnvelope::decode_record(b"\xff\xff not protobuf").is_err());
        assert!(matches!(
            EventEnvelope::decode_record(&EventEnvelope::default().encode_to_vec()),
            Err(EnvelopeError::MissingEventId)
        ));
    }
}

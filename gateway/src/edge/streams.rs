//! Server-streaming methods as Server-Sent Events, resumable from
//! `Last-Event-ID`.

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use prost_reflect::ReflectMessage as _;

use crate::problem::Problem;
use crate::routes::Route;
use crate::transcode::response_json;

/// The request field of a resumable stream (e.g. WatchMyNotifications): it
/// takes the id of the last message seen, which SSE clients send back as
/// `Last-Event-ID` when they reconnect.
const RESUME_FIELD: &str = "after_id";

/// Fills a resumable stream's `after_id` from `Last-Event-ID`, unless the
/// query string set it.
pub(super) fn resume_from_last_event_id(
    message: &mut prost_reflect::DynamicMessage,
    last: Option<&str>,
) {
    let Some(last) = last.filter(|l| !l.is_empty()) else {
        return;
    };
    let Some(field) = message.descriptor().get_field_by_name(RESUME_FIELD) else {
        return;
    };
    if field.kind() == prost_reflect::Kind::String && !message.has_field(&field) {
        message.set_field(&field, prost_reflect::Value::String(last.to_owned()));
    }
}

/// The SSE id of a resumable stream's message: the `id` of the message it
/// carries (e.g. `WatchMyNotificationsResponse.notification.id`).
fn event_id(message: &prost_reflect::DynamicMessage) -> Option<String> {
    message.descriptor().fields().find_map(|field| {
        let value = message.get_field(&field);
        let inner = value.as_message()?;
        let id = inner.get_field_by_name("id")?;
        id.as_str().filter(|id| !id.is_empty()).map(str::to_owned)
    })
}

/// A server-streaming method as Server-Sent Events: one `data:` event per message,
/// and a final `error` event carrying a problem document if the stream fails. A
/// resumable stream's events carry the message's id as the SSE `id`.
pub(super) fn sse(
    route: Route,
    stream: tonic::Streaming<prost_reflect::DynamicMessage>,
    request_id: String,
) -> Response {
    let resumable = route
        .method
        .input()
        .get_field_by_name(RESUME_FIELD)
        .is_some();
    let events = stream.map(move |item| {
        let event = match item {
            Ok(message) => match response_json(&route, &message) {
                Ok(json) => {
                    let event = Event::default().data(String::from_utf8_lossy(&json));
                    match resumable.then(|| event_id(&message)).flatten() {
                        Some(id) => event.id(id),
                        None => event,
                    }
                }
                Err(_) => Event::default()
                    .event("error")
                    .data("{\"code\":\"INTERNAL\"}"),
            },
            Err(status) => {
                let problem = Problem::from_status(&status, &request_id);
                Event::default()
                    .event("error")
                    .data(serde_json::to_string(&problem).unwrap_or_default())
            }
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

//! The NotificationService gRPC API: history, preferences and the live stream
//! of a signed-in shopper's own notifications.

use std::collections::HashSet;

use futures::StreamExt;
use shopmesh_platform::auth::Caller;
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::notification::v1 as pb;
use shopmesh_proto::shop::notification::v1::notification_service_server::NotificationService;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::model::{Channel, EventType, Preference, timestamp};
use crate::store::Store;
use crate::watch::NotificationWatch;

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

pub struct NotificationApi {
    store: Store,
    watch: NotificationWatch,
}

impl NotificationApi {
    pub fn new(store: Store, watch: NotificationWatch) -> Self {
        Self { store, watch }
    }

    async fn preferences_of(&self, user_id: Uuid) -> Result<pb::NotificationPreferences, Status> {
        let (prefs, updated) = self.store.preferences(user_id).await?;
        Ok(pb::NotificationPreferences {
            user_id: user_id.to_string(),
            event_types: prefs
                .iter()
                .map(|p| pb::EventTypePreference {
                    event_type: p.event_type.to_proto() as i32,
                    email: p.email,
                    sms: p.sms,
                })
                .collect(),
            update_time: updated.map(timestamp),
        })
    }
}

/// The changes an UpdateMyPreferences asks for, or every bad field.
fn preference_changes(
    prefs: Option<&pb::NotificationPreferences>,
) -> Result<Vec<Preference>, Status> {
    let Some(prefs) = prefs else {
        return Err(errors::invalid_field("preferences", "is required"));
    };
    let mut violations = FieldViolations::new();
    let mut seen = HashSet::new();
    let mut changes = Vec::with_capacity(prefs.event_types.len());
    for (index, entry) in prefs.event_types.iter().enumerate() {
        let field = format!("preferences.event_types[{index}].event_type");
        match EventType::from_proto(entry.event_type) {
            None => violations.add(field, "must be a known event type"),
            Some(event_type) if !seen.insert(event_type) => {
                violations.add(field, "is listed more than once");
            }
            Some(event_type) => changes.push(Preference {
                event_type,
                email: entry.email,
                sms: entry.sms,
            }),
        }
    }
    violations.into_result()?;
    Ok(changes)
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_my_notifications(
        &self,
        request: Request<pb::ListMyNotificationsRequest>,
    ) -> Result<Response<pb::ListMyNotificationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let page_size = paging::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        violations.check(page_size.is_ok(), "page_size", "must not be negative");
        let channel = match body.channel {
            0 => None,
            raw => {
                let channel = Channel::from_proto(raw);
                violations.check(channel.is_some(), "channel", "is not a channel");
                channel
            }
        };
        violations.into_result()?;
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        let fingerprint = paging::fingerprint(&(caller.user_id, channel.map(Channel::as_str)));
        let before: Option<Uuid> = paging::decode(&fingerprint, &body.page_token)?;
        let mut page = self
            .store
            .list(caller.user_id, channel, before, i64::from(page_size) + 1)
            .await?;
        let mut next_page_token = String::new();
        if page.len() > page_size as usize {
            page.truncate(page_size as usize);
            if let Some(last) = page.last() {
                next_page_token = paging::encode(&fingerprint, &last.id);
            }
        }
        Ok(Response::new(pb::ListMyNotificationsResponse {
            notifications: page.iter().map(|n| n.to_proto()).collect(),
            next_page_token,
        }))
    }

    async fn get_my_preferences(
        &self,
        request: Request<pb::GetMyPreferencesRequest>,
    ) -> Result<Response<pb::GetMyPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?;
        Ok(Response::new(pb::GetMyPreferencesResponse {
            preferences: Some(self.preferences_of(caller.user_id).await?),
        }))
    }

    async fn update_my_preferences(
        &self,
        request: Request<pb::UpdateMyPreferencesRequest>,
    ) -> Result<Response<pb::UpdateMyPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let changes = preference_changes(request.get_ref().preferences.as_ref())?;
        self.store
            .update_preferences(caller.user_id, &changes)
            .await?;
        Ok(Response::new(pb::UpdateMyPreferencesResponse {
            preferences: Some(self.preferences_of(caller.user_id).await?),
        }))
    }

    async fn watch_my_notifications(
        &self,
        request: Request<pb::WatchMyNotificationsRequest>,
    ) -> Result<Response<BoxStream<pb::WatchMyNotificationsResponse>>, Status> {
        let caller = Caller::of(&request)?;
        let after_id = &request.get_ref().after_id;
        let after = if after_id.is_empty() {
            None
        } else {
            Some(errors::parse_uuid("after_id", after_id)?)
        };
        let stream = self
            .watch
            .watch(self.store.clone(), caller.user_id, after)
            .await?
            .map(|item| {
                item.map(|n| pb::WatchMyNotificationsResponse {
                    notification: Some(n.to_proto()),
                })
                .map_err(Status::from)
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        event_type: pb::NotificationEventType,
        email: bool,
        sms: bool,
    ) -> pb::EventTypePreference {
        pb::EventTypePreference {
            event_type: event_type as i32,
            email,
            sms,
        }
    }

    #[test]
    fn unspecified_and_repeated_event_types_are_refused_by_field() {
        let prefs = pb::NotificationPreferences {
            event_types: vec![
                entry(pb::NotificationEventType::OrderConfirmed, true, true),
                entry(pb::NotificationEventType::Unspecified, true, false),
                entry(pb::NotificationEventType::OrderConfirmed, false, false),
                pb::EventTypePreference {
                    event_type: 99,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let status = preference_changes(Some(&prefs))
            .err()
            .map(|s| errors::violated_fields(&s));
        assert_eq!(
            status,
            Some(vec![
                "preferences.event_types[1].event_type".to_owned(),
                "preferences.event_types[2].event_type".to_owned(),
                "preferences.event_types[3].event_type".to_owned(),
            ])
        );
        assert!(preference_changes(None).is_err());
        let ok = pb::NotificationPreferences {
            event_types: vec![entry(pb::NotificationEventType::OrderFailed, false, true)],
            ..Default::default()
        };
        assert_eq!(
            preference_changes(Some(&ok)).ok(),
            Some(vec![Preference {
                event_type: EventType::OrderFailed,
                email: false,
                sms: true
            }])
        );
    }
}

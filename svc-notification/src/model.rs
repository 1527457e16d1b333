//! What a notification is in the shop's words: its kind, channel and status,
//! with their database spellings and their proto enums; the notification
//! itself and a shopper's channel choices.

use chrono::{DateTime, Utc};
use shopmesh_proto::shop::notification::v1 as pb;
use uuid::Uuid;

/// What a notification is about (one per triggering event type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Welcome,
    OrderConfirmed,
    OrderCancelled,
    OrderFailed,
    OrderRefunded,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        Self::Welcome,
        Self::OrderConfirmed,
        Self::OrderCancelled,
        Self::OrderFailed,
        Self::OrderRefunded,
    ];

    /// The stored name, also `NotificationSent.notification_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderCancelled => "order_cancelled",
            Self::OrderFailed => "order_failed",
            Self::OrderRefunded => "order_refunded",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::NotificationEventType::try_from(value).ok()? {
            pb::NotificationEventType::Unspecified => None,
            pb::NotificationEventType::Welcome => Some(Self::Welcome),
            pb::NotificationEventType::OrderConfirmed => Some(Self::OrderConfirmed),
            pb::NotificationEventType::OrderCancelled => Some(Self::OrderCancelled),
            pb::NotificationEventType::OrderFailed => Some(Self::OrderFailed),
            pb::NotificationEventType::OrderRefunded => Some(Self::OrderRefunded),
        }
    }

    pub fn to_proto(self) -> pb::NotificationEventType {
        match self {
            Self::Welcome => pb::NotificationEventType::Welcome,
            Self::OrderConfirmed => pb::NotificationEventType::OrderConfirmed,
            Self::OrderCancelled => pb::NotificationEventType::OrderCancelled,
            Self::OrderFailed => pb::NotificationEventType::OrderFailed,
            Self::OrderRefunded => pb::NotificationEventType::OrderRefunded,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Self::Email, Self::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::NotificationChannel::try_from(value).ok()? {
            pb::NotificationChannel::Unspecified => None,
            pb::NotificationChannel::Email => Some(Self::Email),
            pb::NotificationChannel::Sms => Some(Self::Sms),
        }
    }

    pub fn to_proto(self) -> pb::NotificationChannel {
        match self {
            Self::Email => pb::NotificationChannel::Email,
            Self::Sms => pb::NotificationChannel::Sms,
        }
    }
}

/// Where a notification stands: PENDING until the sender settles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Sent,
    Failed,
    Skipped,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// A notification the handler decided on.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub user_id: Uuid,
    pub channel: Channel,
    pub event_type: EventType,
    pub source_event_id: Uuid,
    pub subject: String,
    pub body: String,
    /// `None`: PENDING; `Some(reason)`: SKIPPED.
    pub skipped: Option<String>,
}

/// A stored notification.
#[derive(Clone, Debug)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub channel: Channel,
    pub event_type: EventType,
    pub source_event_id: Uuid,
    pub subject: String,
    pub body: String,
    pub status: Status,
    pub status_reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub settled_seq: Option<i64>,
}

impl Notification {
    pub fn to_proto(&self) -> pb::Notification {
        let status = match self.status {
            // Not final yet: the proto has no PENDING, so UNSPECIFIED says "not yet".
            Status::Pending => pb::NotificationStatus::Unspecified,
            Status::Sent => pb::NotificationStatus::Sent,
            Status::Failed => pb::NotificationStatus::Failed,
            Status::Skipped => pb::NotificationStatus::Skipped,
        };
        pb::Notification {
            id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            channel: self.channel.to_proto() as i32,
            event_type: self.event_type.to_proto() as i32,
            subject: self.subject.clone(),
            body: self.body.clone(),
            status: status as i32,
            status_reason: self.status_reason.clone(),
            source_event_id: self.source_event_id.to_string(),
            create_time: Some(timestamp(self.created_at)),
            sent_time: self.sent_at.map(timestamp),
        }
    }
}

/// `at` as the API and the events spell it.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The channels a shopper chose for one event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preference {
    pub event_type: EventType,
    pub email: bool,
    pub sms: bool,
}

impl Preference {
    /// Email on, SMS off (the proto's defaults).
    pub fn default_for(event_type: EventType) -> Self {
        Self {
            event_type,
            email: true,
            sms: false,
        }
    }

    pub fn allows(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
        }
    }
}

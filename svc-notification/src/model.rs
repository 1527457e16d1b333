//! What a notification is in the shop's words: its kind, channel and status,
//! with their database spellings and their proto enums.

use shopmesh_proto::shop::notification::v1 as pb;

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

//! The shopmesh contracts as Rust: one module per proto package with its messages,
//! tonic client and server, plus [`FILE_DESCRIPTOR_SET`] for gRPC reflection and
//! the gateway's REST routes. This crate is the Rust SDK for shopmesh.

#![allow(clippy::all, missing_docs, rust_2018_idioms)]

/// Every shopmesh proto file and its imports, as an encoded `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shopmesh_descriptor.bin"));

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub mod shop {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("shop.common.v1");
        }
    }
    pub mod auth {
        pub mod v1 {
            tonic::include_proto!("shop.auth.v1");
        }
    }
    pub mod user {
        pub mod v1 {
            tonic::include_proto!("shop.user.v1");
        }
    }
    pub mod product {
        pub mod v1 {
            tonic::include_proto!("shop.product.v1");
        }
    }
    pub mod inventory {
        pub mod v1 {
            tonic::include_proto!("shop.inventory.v1");
        }
    }
    pub mod cart {
        pub mod v1 {
            tonic::include_proto!("shop.cart.v1");
        }
    }
    pub mod order {
        pub mod v1 {
            tonic::include_proto!("shop.order.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("shop.payment.v1");
        }
    }
    pub mod notification {
        pub mod v1 {
            tonic::include_proto!("shop.notification.v1");
        }
    }
    pub mod recommendation {
        pub mod v1 {
            tonic::include_proto!("shop.recommendation.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("shop.events.v1");
        }
    }
}

/// The Kafka topics of the events in `shop.events.v1` (its `events.proto`
/// says which events each carries and how they are keyed), for producers and
/// consumers to name the same topic. A message that keeps failing goes to the
/// topic's `<topic>.dlq`.
pub mod topics {
    /// svc-auth: UserRegistered.
    pub const AUTH_EVENTS: &str = "shop.auth.events";
    /// svc-order: OrderCreated, OrderConfirmed, OrderCancelled, OrderFailed, OrderRefunded.
    pub const ORDER_EVENTS: &str = "shop.order.events";
    /// svc-payment: PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded,
    /// PaymentVoided.
    pub const PAYMENT_EVENTS: &str = "shop.payment.events";
    /// svc-notification: NotificationSent.
    pub const NOTIFICATION_EVENTS: &str = "shop.notification.events";
}

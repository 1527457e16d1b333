//! The messages shoppers get, one template per event type: an email subject
//! and plain-text body, and a short SMS text. Kept in code so a missing field
//! is a compile error and every template is unit-tested.

use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::events::v1::{
    OrderCancelled, OrderConfirmed, OrderFailed, OrderLine, OrderRefunded, PaymentRefunded,
    UserRegistered,
};

use crate::model::{Channel, EventType};

/// One event rendered for every channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub event_type: EventType,
    pub subject: String,
    pub email_body: String,
    pub sms_text: String,
}

impl Rendered {
    /// `(subject, body)` as stored and sent on `channel` (SMS has no subject).
    pub fn for_channel(&self, channel: Channel) -> (String, String) {
        match channel {
            Channel::Email => (self.subject.clone(), self.email_body.clone()),
            Channel::Sms => (String::new(), self.sms_text.clone()),
        }
    }
}

/// Decimal places of a currency's minor unit (ISO 4217); 2 unless listed.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// "EUR 1,234.50" from minor units.
pub fn format_money(money: Option<&Money>) -> String {
    let Some(money) = money else {
        return "-".to_owned();
    };
    let digits = minor_digits(&money.currency_code);
    let scale = 10_u64.pow(digits);
    let sign = if money.amount_minor < 0 { "-" } else { "" };
    let minor = money.amount_minor.unsigned_abs();
    let whole = group_thousands(minor / scale);
    let amount = if digits == 0 {
        whole
    } else {
        format!("{whole}.{:0width$}", minor % scale, width = digits as usize)
    };
    format!("{sign}{} {amount}", money.currency_code)
}

fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn short(order_id: &str) -> &str {
    order_id.get(..8).unwrap_or(order_id)
}

fn lines(lines: &[OrderLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "  {} x {} ({}): {}\n",
                l.quantity,
                l.name,
                l.sku,
                format_money(l.line_total.as_ref())
            )
        })
        .collect()
}

const SIGNATURE: &str = "\n-- \nshopmesh\n";

pub fn order_confirmed(e: &OrderConfirmed) -> Rendered {
    let total = format_money(e.total.as_ref());
    Rendered {
        event_type: EventType::OrderConfirmed,
        subject: format!("Your order {} is confirmed", short(&e.order_id)),
        email_body: format!(
            "Thank you for your order!\n\nOrder: {}\n{}\nTotal charged: {total}\n\nWe will let you know when it ships.\n{SIGNATURE}",
            e.order_id,
            lines(&e.lines),
        ),
        sms_text: format!(
            "shopmesh: order {} confirmed, {total} charged.",
            short(&e.order_id)
        ),
    }
}

pub fn order_cancelled(e: &OrderCancelled) -> Rendered {
    let reason = if e.reason.is_empty() {
        String::new()
    } else {
        format!("Reason: {}\n", e.reason)
    };
    Rendered {
        event_type: EventType::OrderCancelled,
        subject: format!("Your order {} was cancelled", short(&e.order_id)),
        email_body: format!(
            "Your order {} was cancelled and nothing was charged.\n{reason}\n{}{SIGNATURE}",
            e.order_id,
            lines(&e.lines),
        ),
        sms_text: format!(
            "shopmesh: order {} cancelled, nothing was charged.",
            short(&e.order_id)
        ),
    }
}

pub fn order_failed(e: &OrderFailed) -> Rendered {
    Rendered {
        event_type: EventType::OrderFailed,
        subject: format!("We could not complete your order {}", short(&e.order_id)),
        email_body: format!(
            "We could not complete your order {}: {}.\nAny amount held on your card has been released.\n\n{}{SIGNATURE}",
            e.order_id,
            e.reason,
            lines(&e.lines),
        ),
        sms_text: format!(
            "shopmesh: order {} could not be completed: {}.",
            short(&e.order_id),
            e.reason
        ),
    }
}

pub fn order_refunded(e: &OrderRefunded) -> Rendered {
    let refunded = format_money(e.refunded.as_ref());
    Rendered {
        event_type: EventType::OrderRefunded,
        subject: format!("Refund for your order {}", short(&e.order_id)),
        email_body: format!(
            "Your order {} was cancelled and {refunded} was refunded to your card.\nIt may take a few days to appear on your statement.\n{SIGNATURE}",
            e.order_id,
        ),
        sms_text: format!(
            "shopmesh: {refunded} refunded for order {}.",
            short(&e.order_id)
        ),
    }
}

/// A partial refund of a payment (a full one is announced by `OrderRefunded`).
pub fn payment_refunded(e: &PaymentRefunded) -> Rendered {
    let amount = format_money(e.amount.as_ref());
    let total = format_money(e.total_refunded.as_ref());
    Rendered {
        event_type: EventType::OrderRefunded,
        subject: format!("Partial refund for your order {}", short(&e.order_id)),
        email_body: format!(
            "{amount} of your payment for order {} was refunded to your card ({total} refunded so far).\nIt may take a few days to appear on your statement.\n{SIGNATURE}",
            e.order_id,
        ),
        sms_text: format!(
            "shopmesh: {amount} refunded for order {}.",
            short(&e.order_id)
        ),
    }
}

pub fn welcome(e: &UserRegistered) -> Rendered {
    let name = if e.display_name.is_empty() {
        "there"
    } else {
        e.display_name.as_str()
    };
    Rendered {
        event_type: EventType::Welcome,
        subject: "Welcome to shopmesh".to_owned(),
        email_body: format!(
            "Hi {name},\n\nyour shopmesh account is ready. Happy shopping!\n{SIGNATURE}"
        ),
        sms_text: "Welcome to shopmesh!".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Option<Money> {
        Some(Money {
            currency_code: "EUR".to_owned(),
            amount_minor: minor,
        })
    }

    #[test]
    fn money_is_formatted_from_minor_units() {
        assert_eq!(format_money(eur(123_456).as_ref()), "EUR 1,234.56");
        assert_eq!(format_money(eur(5).as_ref()), "EUR 0.05");
        assert_eq!(format_money(eur(-1000).as_ref()), "-EUR 10.00");
        let yen = Money {
            currency_code: "JPY".to_owned(),
            amount_minor: 1_234_567,
        };
        assert_eq!(format_money(Some(&yen)), "JPY 1,234,567");
        let dinar = Money {
            currency_code: "KWD".to_owned(),
            amount_minor: 1_005,
        };
        assert_eq!(format_money(Some(&dinar)), "KWD 1.005");
        assert_eq!(format_money(None), "-");
    }

    #[test]
    fn order_confirmed_names_the_order_lines_and_total() {
        let event = OrderConfirmed {
            order_id: "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000".to_owned(),
            lines: vec![OrderLine {
                name: "Tea pot".to_owned(),
                sku: "TEA-1".to_owned(),
                quantity: 2,
                line_total: eur(3_998),
                ..Default::default()
            }],
            total: eur(3_998),
            ..Default::default()
        };
        let rendered = order_confirmed(&event);
        assert_eq!(rendered.subject, "Your order 0190aaaa is confirmed");
        assert!(
            rendered
                .email_body
                .contains("2 x Tea pot (TEA-1): EUR 39.98")
        );
        assert!(rendered.email_body.contains("Total charged: EUR 39.98"));
        assert!(
            rendered
                .email_body
                .contains("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000")
        );
        assert_eq!(
            rendered.sms_text,
            "shopmesh: order 0190aaaa confirmed, EUR 39.98 charged."
        );
        assert_eq!(rendered.for_channel(Channel::Sms).0, "");
    }

    #[test]
    fn failures_cancellations_and_refunds_say_what_happened() {
        let failed = order_failed(&OrderFailed {
            order_id: "o-1".to_owned(),
            reason: "card declined: insufficient_funds".to_owned(),
            ..Default::default()
        });
        assert_eq!(failed.event_type, EventType::OrderFailed);
        assert!(
            failed
                .email_body
                .contains("card declined: insufficient_funds")
        );
        let cancelled = order_cancelled(&OrderCancelled {
            order_id: "o-2".to_owned(),
            reason: "changed my mind".to_owned(),
            ..Default::default()
        });
        assert!(cancelled.email_body.contains("Reason: changed my mind"));
        let refunded = order_refunded(&OrderRefunded {
            order_id: "o-3".to_owned(),
            refunded: eur(1_050),
            ..Default::default()
        });
        assert!(refunded.email_body.contains("EUR 10.50 was refunded"));
        let partial = payment_refunded(&PaymentRefunded {
            order_id: "o-4".to_owned(),
            amount: eur(200),
            total_refunded: eur(700),
            ..Default::default()
        });
        assert_eq!(partial.event_type, EventType::OrderRefunded);
        assert!(partial.email_body.contains("EUR 2.00"));
        assert!(partial.email_body.contains("EUR 7.00 refunded so far"));
        let hello = welcome(&UserRegistered {
            display_name: "Ada".to_owned(),
            ..Default::default()
        });
        assert!(hello.email_body.starts_with("Hi Ada,"));
    }
}

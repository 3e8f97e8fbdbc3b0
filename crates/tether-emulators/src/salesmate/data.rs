//! Salesmate's seeded records per account: ~250 deals, ~300 contacts and a few users, shaped
//! like the v4 API's JSON (camelCase fields, capitalised related objects `Owner`,
//! `PrimaryContact`, `Company`).
//!
//! Seeded from the link name, so each account has its own stable data. This module must
//! never read the clock: records created at runtime get their timestamps in `routes`.

use serde_json::{Value, json};

use crate::seed_data::{self, SeedRng};

const DEALS: i64 = 250;
const CONTACTS: i64 = 300;

/// The seeded records of one account.
pub(crate) struct Seeded {
    pub deals: Vec<Value>,
    pub contacts: Vec<Value>,
    pub users: Vec<Value>,
}

/// The `{id, name, email}` summary used for related objects.
pub(crate) fn summary(record: &Value) -> Value {
    json!({
        "id": record.get("id").cloned().unwrap_or(Value::Null),
        "name": record.get("name").cloned().unwrap_or(Value::Null),
        "email": record.get("email").cloned().unwrap_or(Value::Null),
    })
}

/// The fixed data of the account `link`.
pub(crate) fn seed(link: &str) -> Seeded {
    let mut rng = SeedRng::from_label(link);
    let start = seed_data::epoch_2023();
    let timestamp = |rng: &mut SeedRng, from: i64| {
        let day = from + i64::try_from(rng.range(0, 700)).unwrap_or(0);
        (day, seed_data::datetime_string(day, rng.range(0, 86_399)))
    };

    let users: Vec<Value> = (1..=4)
        .map(|id: i64| {
            let person = seed_data::person(&mut rng);
            json!({
                "id": id,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "name": person.full_name(),
                "email": person.email(id),
                "status": if id == 4 { "inactive" } else { "active" },
                "role": if id == 1 { "Admin" } else { "Standard" },
            })
        })
        .collect();
    let active_owner = |rng: &mut SeedRng| {
        let index = usize::try_from(rng.range(0, 2)).unwrap_or(0);
        summary(&users[index])
    };

    let contacts: Vec<Value> = (1..=CONTACTS)
        .map(|id| {
            let person = seed_data::person(&mut rng);
            let (created_day, created_at) = timestamp(&mut rng, start);
            let (_, modified_at) = timestamp(&mut rng, created_day);
            let company_id = seed_data::COMPANIES
                .iter()
                .position(|c| *c == person.company)
                .map_or(1, |i| i64::try_from(i).unwrap_or(0) + 1);
            json!({
                "id": id,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "name": person.full_name(),
                "email": person.email(id),
                "mobile": format!("+1-555-01{:02}", id % 100),
                "designation": rng.pick(&["Partner", "Advisor", "CFO", "Owner", "Analyst"]),
                "Company": { "id": company_id, "name": person.company },
                "Owner": active_owner(&mut rng),
                "createdAt": created_at,
                "lastModifiedAt": modified_at,
            })
        })
        .collect();

    const STAGES: &[&str] = &["New", "Qualified", "Proposal", "Negotiation", "Closed"];
    let deals: Vec<Value> = (1..=DEALS)
        .map(|id| {
            let contact_index = usize::try_from(rng.range(0, 299)).unwrap_or(0);
            let contact = &contacts[contact_index];
            let company = contact
                .pointer("/Company/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let (created_day, created_at) = timestamp(&mut rng, start);
            let (_, modified_at) = timestamp(&mut rng, created_day);
            let status = match rng.range(0, 9) {
                0..=5 => "Open",
                6..=7 => "Won",
                _ => "Lost",
            };
            let title = [rng.pick(seed_data::DEAL_WORDS), "-", &company].join(" ");
            json!({
                "id": id,
                "title": title,
                "dealValue": rng.range(5, 400) * 500,
                "currency": "USD",
                "status": status,
                "stage": rng.pick(STAGES),
                "pipeline": "Sales",
                "priority": rng.pick(&["Low", "Medium", "High"]),
                "Owner": active_owner(&mut rng),
                "PrimaryContact": summary(contact),
                "createdAt": created_at,
                "lastModifiedAt": modified_at,
            })
        })
        .collect();

    Seeded {
        deals,
        contacts,
        users,
    }
}

//! Redtail's seeded records: ~300 contacts, ~120 opportunities, ~200 activities, identical on
//! every run, shaped like the public v1 API's JSON (snake_case, `amount` as a string).
//!
//! The dataset is read-only once built; this module must never depend on the clock.

use serde::Serialize;

use crate::seed_data::{self, SeedRng};

const CONTACTS: i64 = 300;
const OPPORTUNITIES: i64 = 120;
const ACTIVITIES: i64 = 200;

/// One e-mail address of a contact.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Email {
    pub id: i64,
    pub address: String,
    pub email_type: i64,
    pub is_primary: bool,
}

/// A Redtail contact.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Contact {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub first_name: String,
    pub last_name: String,
    pub full_name: String,
    pub company_name: String,
    pub status_id: i64,
    pub category_id: i64,
    pub created_at: String,
    pub updated_at: String,
    pub emails: Vec<Email>,
}

/// A Redtail opportunity; `amount` is a decimal string, as the API sends it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Opportunity {
    pub id: i64,
    pub name: String,
    pub contact_id: i64,
    pub stage_id: i64,
    pub amount: String,
    pub probability: i64,
    pub close_date: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A Redtail activity (calendar item or task).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Activity {
    pub id: i64,
    pub subject: String,
    pub contact_id: i64,
    pub start_date: String,
    pub end_date: String,
    pub all_day: bool,
    pub completed: bool,
    /// Day number of `start_date`, for date-range filtering.
    #[serde(skip)]
    pub day: i64,
}

/// Everything the emulator serves.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub contacts: Vec<Contact>,
    pub opportunities: Vec<Opportunity>,
    pub activities: Vec<Activity>,
}

impl Dataset {
    /// The fixed dataset.
    pub(crate) fn seeded() -> Self {
        let mut rng = SeedRng::new(0x00de_7a11);
        let start = seed_data::epoch_2023();
        let timestamp = |rng: &mut SeedRng, from: i64| {
            let day = from + i64::try_from(rng.range(0, 700)).unwrap_or(0);
            (
                day,
                seed_data::datetime_string(day, rng.range(8 * 3600, 18 * 3600)),
            )
        };

        let contacts: Vec<Contact> = (1..=CONTACTS)
            .map(|id| {
                let person = seed_data::person(&mut rng);
                let (created_day, created_at) = timestamp(&mut rng, start);
                let (_, updated_at) = timestamp(&mut rng, created_day);
                Contact {
                    id,
                    kind: "Crm::Contact::Individual",
                    first_name: person.first_name.clone(),
                    last_name: person.last_name.clone(),
                    full_name: person.full_name(),
                    company_name: person.company.clone(),
                    status_id: i64::try_from(rng.range(1, 4)).unwrap_or(1),
                    category_id: i64::try_from(rng.range(1, 6)).unwrap_or(1),
                    created_at,
                    updated_at,
                    emails: vec![Email {
                        id: id * 10,
                        address: person.email(id),
                        email_type: 1,
                        is_primary: true,
                    }],
                }
            })
            .collect();

        let opportunities = (1..=OPPORTUNITIES)
            .map(|id| {
                let contact_id = i64::try_from(rng.range(1, 300)).unwrap_or(1);
                let company = &contacts[usize::try_from(contact_id - 1).unwrap_or(0)].company_name;
                let (created_day, created_at) = timestamp(&mut rng, start);
                let (_, updated_at) = timestamp(&mut rng, created_day);
                let close_day = created_day + i64::try_from(rng.range(14, 180)).unwrap_or(30);
                let dollars = rng.range(10, 900) * 250;
                let cents = if rng.chance(30) { 50 } else { 0 };
                Opportunity {
                    id,
                    name: [rng.pick(seed_data::DEAL_WORDS), "-", company].join(" "),
                    contact_id,
                    stage_id: i64::try_from(rng.range(1, 6)).unwrap_or(1),
                    amount: format!("{dollars}.{cents:02}"),
                    probability: i64::try_from(rng.range(1, 9) * 10).unwrap_or(50),
                    close_date: seed_data::date_string(close_day),
                    created_at,
                    updated_at,
                }
            })
            .collect();

        let activities = (1..=ACTIVITIES)
            .map(|id| {
                let day = start + i64::try_from(rng.range(0, 730)).unwrap_or(0);
                let second = rng.range(8, 17) * 3600;
                let all_day = rng.chance(10);
                Activity {
                    id,
                    subject: rng.pick(seed_data::ACTIVITY_SUBJECTS).to_owned(),
                    contact_id: i64::try_from(rng.range(1, 300)).unwrap_or(1),
                    start_date: seed_data::datetime_string(day, second),
                    end_date: seed_data::datetime_string(day, second + 3600),
                    all_day,
                    completed: rng.chance(40),
                    day,
                }
            })
            .collect();

        Self {
            contacts,
            opportunities,
            activities,
        }
    }
}

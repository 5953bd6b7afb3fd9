//! `GET /wallets/{userId}/balance?at=`: the balance as it stood at an
//! instant, over real HTTP, checked against the entries' own times for many
//! instants (each entry's, a millisecond either side, before the first,
//! now), in any offset.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeDuration, OffsetDateTime, UtcOffset};

use crate::helpers::TestApp;

fn parse_ms(text: &str) -> i64 {
    let time = OffsetDateTime::parse(text, &Rfc3339).expect("an RFC 3339 time");
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

fn format(ms: i64, offset_hours: i8) -> String {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    utc.to_offset(UtcOffset::from_hms(offset_hours, 0, 0).unwrap())
        .format(&Rfc3339)
        .unwrap()
}

fn gold_at(app: &TestApp, user: &str, at: &str) -> Value {
    let query = serde_urlencoded::to_string([("at", at)]).unwrap();
    let response = app.get(&format!("/wallets/{user}/balance?{query}"));
    assert_eq!(response.status, 200, "{at}: {:?}", response.body);
    response.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .cloned()
        .unwrap()
}

/// Goal: for many instants, `?at=` answers the balance right after the last
/// entry made at or before it (0 before the first), without `held` and
/// `available`; the same instant in another offset answers the same.
#[test]
fn a_balance_at_an_instant_counts_exactly_the_entries_made_by_then() {
    let app = TestApp::spawn();
    let user = "user_tim";
    // (entry time in ms, balance right after it), oldest first.
    let mut timeline: Vec<(i64, i64)> = Vec::new();
    for step in 0..16_u64 {
        let response = if step % 3 == 2 {
            app.post_spend(user, "GOLD", 7, &format!("at-{step}"))
        } else {
            app.post_topup(user, "GOLD", 10 + step, &format!("at-{step}"))
        };
        assert_eq!(response.status, 201, "{:?}", response.body);
        let transaction = &response.data()["transaction"];
        timeline.push((
            parse_ms(transaction["createdAt"].as_str().unwrap()),
            transaction["balanceAfter"].as_i64().unwrap(),
        ));
        if step % 4 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    }
    let expected = |at: i64| {
        timeline
            .iter()
            .rev()
            .find(|(created, _)| *created <= at)
            .map_or(0, |(_, balance)| *balance)
    };
    let mut instants: Vec<i64> = timeline
        .iter()
        .flat_map(|(created, _)| [created - 1, *created, created + 1])
        .collect();
    instants.push(timeline[0].0 - 60_000);
    let now = OffsetDateTime::now_utc();
    instants.push((now.unix_timestamp_nanos() / 1_000_000) as i64 - 1);
    for (index, at) in instants.iter().enumerate() {
        let offset = [0, 2, -5][index % 3];
        let row = gold_at(&app, user, &format(*at, offset));
        assert_eq!(
            row["balance"],
            expected(*at),
            "at {} ({at})",
            format(*at, offset)
        );
        assert!(row.get("held").is_none(), "{row}");
        assert!(row.get("available").is_none(), "{row}");
    }
    // A finer fraction counts the entries of its millisecond.
    let (last_ms, last_balance) = *timeline.last().unwrap();
    let fine = OffsetDateTime::from_unix_timestamp_nanos(i128::from(last_ms) * 1_000_000 + 999_000)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    let row = gold_at(&app, user, &fine);
    assert_eq!(row["balance"], last_balance, "{fine}");
    // Without `at`: now, with held and available.
    let now = app.get(&format!("/wallets/{user}/balance"));
    let gold = now.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .cloned()
        .unwrap();
    assert_eq!(gold["balance"], last_balance);
    assert_eq!(gold["available"], last_balance);
}

/// Goal: a time in the future, one that is not RFC 3339, `at` given twice
/// and an unknown parameter are each 400 naming the parameter; a user with
/// no wallet is 404 whatever the time.
#[test]
fn a_bad_or_future_instant_is_refused_naming_at() {
    let app = TestApp::spawn();
    let future = (OffsetDateTime::now_utc() + TimeDuration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    for query in [
        format!("at={}", future.replace('+', "%2B")),
        "at=yesterday".to_owned(),
        "at=2026-11-23".to_owned(),
        "at=2026-11-23T10:15:30Z&at=2026-11-23T10:15:31Z".to_owned(),
    ] {
        let refused = app.get(&format!("/wallets/user_alice/balance?{query}"));
        assert_eq!(refused.status, 400, "{query}: {:?}", refused.body);
        assert_eq!(refused.invalid_fields(), vec!["at"], "{query}");
    }
    let refused = app.get("/wallets/user_alice/balance?when=now");
    assert_eq!(refused.invalid_fields(), vec!["when"]);
    let missing = app.get("/wallets/user_nobody/balance?at=2026-01-01T00:00:00Z");
    assert_eq!(missing.error_code(), "WALLET_NOT_FOUND");
}

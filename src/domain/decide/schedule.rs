//! Schedules: how a cron expression is read (as tokio-cron-scheduler 0.15
//! reads it, seconds first) and when it fires next in its time zone. The
//! one source of fire times, for the daemon, the freeze and `status`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Parses a cron expression with the settings tokio-cron-scheduler 0.15 uses.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// The first time after `after` (exclusive) that `cron` fires, read in `tz`.
pub fn next_fire(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

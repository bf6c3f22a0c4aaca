//! A response body → what the client does with it (`asana::envelope` for a
//! success, `asana::error_message` for an error), then the DTOs every read
//! decodes `data` into, and a lock task as the gate and `status` see and
//! print it. Bodies are untrusted: nothing here may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate::adapters::asana::{self, CustomFieldSetting, Named, Story, Task, User};
use serde_json::Value;

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

fn lock_tasks(tasks: Vec<Task>) {
    for t in tasks {
        let _ = serde_json::to_value(&t);
        if let Some(lock) = pushgate::run::gather::lock_task(t, Some("Fix commit")) {
            let _ = lock.to_string();
            let _ = pushgate::cmd::views::lock_json(&lock);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = asana::error_message(data);
    let Ok(env) = asana::envelope(data) else {
        return;
    };
    if let Some(tasks) = decode::<Vec<Task>>(&env.data) {
        lock_tasks(tasks);
    }
    if let Some(task) = decode::<Task>(&env.data) {
        lock_tasks(vec![task]);
    }
    let _ = decode::<Vec<Story>>(&env.data);
    let _ = decode::<Story>(&env.data);
    let _ = decode::<User>(&env.data);
    let _ = decode::<Named>(&env.data);
    let _ = decode::<Vec<CustomFieldSetting>>(&env.data);
});

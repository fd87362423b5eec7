//! A test framework on the v1 scheduler HTTP API (`POST /api/v1/scheduler`), as Marathon uses
//! it: SUBSCRIBE (a RecordIO stream of events), ACCEPT with LAUNCH or LAUNCH_GROUP, ACKNOWLEDGE
//! every update that asks for it, KILL, RECONCILE, TEARDOWN. It checkpoints and has a failover
//! timeout, so its tasks outlive an agent restart, and it re-subscribes with its id.
//!
//! A thread reads the stream into [`Events`]; the test waits on them.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http;

const API: &str = "/api/v1/scheduler";

/// A task's status update, as the master sent it.
#[derive(Debug, Clone)]
pub struct Status {
    pub task_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub agent_id: Option<String>,
    /// When the update reached us.
    pub received: Instant,
}

impl Status {
    fn parse(status: &Value) -> Option<Self> {
        let text =
            |pointer: &str| status.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            task_id: text("/task_id/value")?,
            state: text("/state")?,
            reason: text("/reason"),
            message: text("/message"),
            agent_id: text("/agent_id/value"),
            received: Instant::now(),
        })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state.as_str(),
            "TASK_FINISHED"
                | "TASK_FAILED"
                | "TASK_KILLED"
                | "TASK_LOST"
                | "TASK_ERROR"
                | "TASK_DROPPED"
                | "TASK_GONE"
                | "TASK_GONE_BY_OPERATOR"
        )
    }

    /// The state, reason and message on one line, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}): {}",
            self.state,
            self.reason.as_deref().unwrap_or("no reason"),
            self.message.as_deref().unwrap_or("no message")
        )
    }
}

/// What the stream has brought so far.
#[derive(Default)]
struct Events {
    framework_id: Option<String>,
    stream_id: Option<String>,
    offers: Vec<Value>,
    statuses: Vec<Status>,
    /// ERROR events and a broken stream, in words.
    errors: Vec<String>,
    /// Bumped at every SUBSCRIBED, so a re-subscribe can wait for its own.
    subscriptions: u32,
}

type Shared = Arc<(Mutex<Events>, Condvar)>;

pub struct Framework {
    master: SocketAddr,
    name: String,
    shared: Shared,
    reader: Option<(std::net::TcpStream, JoinHandle<()>)>,
}

/// A command task, as Marathon launches one: a shell command with environment variables.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub command: String,
    pub environment: Vec<(String, String)>,
    /// The user the task runs as (`CommandInfo.user`); the framework's (root) if `None`.
    pub user: Option<String>,
}

impl Task {
    pub fn new(name: &str, command: &str) -> Self {
        let id = format!("{name}.{}", uuid::Uuid::new_v4().simple());
        Self { id, command: command.to_owned(), environment: Vec::new(), user: None }
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.environment.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// The task's volume: `FLOCKER_ID` and `FLOCKER_CONTAINER_VOLUME_PATH`.
    pub fn volume(self, flocker_id: &str, path: &str) -> Self {
        self.env("FLOCKER_ID", flocker_id).env("FLOCKER_CONTAINER_VOLUME_PATH", path)
    }

    fn task_info(&self, agent_id: &str) -> Value {
        let variables: Vec<Value> = self
            .environment
            .iter()
            .map(|(name, value)| json!({"name": name, "type": "VALUE", "value": value}))
            .collect();
        let mut command = json!({
            "shell": true,
            "value": self.command,
            "environment": {"variables": variables},
        });
        if let Some(user) = &self.user {
            command["user"] = json!(user);
        }
        json!({
            "name": self.id,
            "task_id": {"value": self.id},
            "agent_id": {"value": agent_id},
            "resources": resources(0.1, 32.0),
            "command": command,
        })
    }
}

fn resources(cpus: f64, mem: f64) -> Value {
    json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ])
}

/// The default executor's own share: Mesos wants cpus, mem and disk for it.
fn executor_resources() -> Value {
    let mut all = resources(0.1, 32.0);
    if let Some(list) = all.as_array_mut() {
        list.push(json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 32.0}}));
    }
    all
}

impl Framework {
    /// Subscribes a new framework to the master at `master`.
    pub fn subscribe(master: SocketAddr, name: &str) -> Result<Self, String> {
        let mut framework =
            Self { master, name: name.to_owned(), shared: Arc::default(), reader: None };
        framework.open_stream()?;
        Ok(framework)
    }

    /// Subscribes again with the same framework id (after the master restarted).
    pub fn resubscribe(&mut self) -> Result<(), String> {
        self.close_stream();
        self.open_stream()
    }

    fn open_stream(&mut self) -> Result<(), String> {
        let mut framework_info = json!({
            "user": "root",
            "name": self.name,
            "checkpoint": true,
            "failover_timeout": 600.0,
        });
        let id = self.events().framework_id.clone();
        let mut call = json!({"type": "SUBSCRIBE"});
        if let Some(id) = &id {
            framework_info["id"] = json!({"value": id});
            call["framework_id"] = json!({"value": id});
        }
        call["subscribe"] = json!({"framework_info": framework_info});
        let seen = self.events().subscriptions;
        let mut stream = http::post_streaming(self.master, API, &call.to_string())?;
        if stream.status != 200 {
            let status = stream.status;
            return Err(format!("SUBSCRIBE: HTTP {status}: {}", stream.rest()));
        }
        let stream_id = stream.header("Mesos-Stream-Id").map(str::to_owned);
        self.events().stream_id = stream_id;
        let closer = stream.closer.try_clone().map_err(|e| e.to_string())?;
        let shared = Arc::clone(&self.shared);
        let master = self.master;
        let handle = std::thread::spawn(move || read_events(&mut stream, &shared, master));
        self.reader = Some((closer, handle));
        self.wait("SUBSCRIBED", Duration::from_secs(30), |events| {
            (events.subscriptions > seen).then_some(())
        })
    }

    fn close_stream(&mut self) {
        if let Some((closer, handle)) = self.reader.take() {
            http::shut(&closer);
            let _ = handle.join();
        }
    }

    fn events(&self) -> MutexGuard<'_, Events> {
        self.shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `ready` says yes of the events, or fails with what was seen.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&mut Events) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        let mut events = self.events();
        loop {
            if let Some(found) = ready(&mut events) {
                return Ok(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{}: no {what} within {timeout:?}; errors: {:?}",
                    self.name, events.errors
                ));
            }
            events = self
                .shared
                .1
                .wait_timeout(events, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn framework_id(&self) -> String {
        self.events().framework_id.clone().unwrap_or_default()
    }

    fn call(&self, call: Value) -> Result<(), String> {
        let stream_id = self.events().stream_id.clone().unwrap_or_default();
        let answer =
            http::post(self.master, API, &call.to_string(), &[("Mesos-Stream-Id", &stream_id)])?;
        if answer.status / 100 != 2 {
            let kind = call["type"].as_str().unwrap_or("call");
            return Err(format!("{kind}: HTTP {}: {}", answer.status, answer.body));
        }
        Ok(())
    }

    /// Waits for an offer (the agent's resources) and takes it out of the pool.
    fn take_offer(&self) -> Result<(String, String), String> {
        self.wait("offer", Duration::from_secs(30), |events| {
            let offer = events.offers.pop()?;
            let id = offer.pointer("/id/value")?.as_str()?.to_owned();
            let agent = offer.pointer("/agent_id/value")?.as_str()?.to_owned();
            Some((id, agent))
        })
    }

    /// Launches a command task on the next offer; returns when the master accepted the call.
    pub fn launch(&self, task: &Task) -> Result<Launched, String> {
        let (offer, agent) = self.take_offer()?;
        let operation =
            json!({"type": "LAUNCH", "launch": {"task_infos": [task.task_info(&agent)]}});
        self.accept(&offer, operation, &agent)
    }

    /// Launches `tasks` as one task group on the default executor (nested containers).
    pub fn launch_group(&self, executor: &str, tasks: &[Task]) -> Result<Launched, String> {
        let (offer, agent) = self.take_offer()?;
        let executor_info = json!({
            "type": "DEFAULT",
            "executor_id": {"value": executor},
            "framework_id": {"value": self.framework_id()},
            "resources": executor_resources(),
        });
        let infos: Vec<Value> = tasks.iter().map(|t| t.task_info(&agent)).collect();
        let operation = json!({
            "type": "LAUNCH_GROUP",
            "launch_group": {"executor": executor_info, "task_group": {"tasks": infos}},
        });
        self.accept(&offer, operation, &agent)
    }

    fn accept(&self, offer: &str, operation: Value, agent: &str) -> Result<Launched, String> {
        let accepted = Instant::now();
        self.call(json!({
            "framework_id": {"value": self.framework_id()},
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [{"value": offer}],
                "operations": [operation],
                "filters": {"refuse_seconds": 0.0},
            },
        }))?;
        Ok(Launched { agent_id: agent.to_owned(), accepted })
    }

    pub fn kill(&self, task_id: &str, agent_id: &str) -> Result<(), String> {
        self.call(json!({
            "framework_id": {"value": self.framework_id()},
            "type": "KILL",
            "kill": {"task_id": {"value": task_id}, "agent_id": {"value": agent_id}},
        }))
    }

    /// Asks the master for the task's current state (an update with reason RECONCILIATION).
    pub fn reconcile(&self, task_id: &str, agent_id: &str) -> Result<(), String> {
        self.call(json!({
            "framework_id": {"value": self.framework_id()},
            "type": "RECONCILE",
            "reconcile": {"tasks": [{"task_id": {"value": task_id}, "agent_id": {"value": agent_id}}]},
        }))
    }

    /// Ends the framework: the master kills its tasks.
    pub fn teardown(&self) -> Result<(), String> {
        self.call(json!({"framework_id": {"value": self.framework_id()}, "type": "TEARDOWN"}))
    }

    /// Every update of the task so far, in order.
    pub fn statuses(&self, task_id: &str) -> Vec<Status> {
        self.events().statuses.iter().filter(|s| s.task_id == task_id).cloned().collect()
    }

    /// Waits until the task reaches one of `states`; fails early if it ends in another.
    pub fn wait_for_state(
        &self,
        task_id: &str,
        states: &[&str],
        timeout: Duration,
    ) -> Result<Status, String> {
        let what = format!("{states:?} for {task_id}");
        let outcome = self.wait(&what, timeout, |events| {
            let mine = events.statuses.iter().filter(|s| s.task_id == task_id);
            let wanted = mine.clone().find(|s| states.contains(&s.state.as_str()));
            let ended = mine.clone().find(|s| s.is_terminal());
            wanted.or(ended).cloned()
        })?;
        if !states.contains(&outcome.state.as_str()) {
            return Err(format!("{task_id} ended {}, not {states:?}", outcome.describe()));
        }
        Ok(outcome)
    }

    /// Waits until the task's latest update is terminal (whatever it is).
    pub fn wait_for_end(&self, task_id: &str, timeout: Duration) -> Result<Status, String> {
        self.wait(&format!("end of {task_id}"), timeout, |events| {
            events.statuses.iter().rev().find(|s| s.task_id == task_id && s.is_terminal()).cloned()
        })
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        self.close_stream();
    }
}

/// What an ACCEPT started: where, and when it was sent (for the benchmark).
#[derive(Debug, Clone)]
pub struct Launched {
    pub agent_id: String,
    pub accepted: Instant,
}

/// The reader thread: RecordIO (`<length>\n<json>`) over the chunks, until the stream ends.
fn read_events(stream: &mut http::Streamed, shared: &Shared, master: SocketAddr) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => buffer.extend(chunk),
            Ok(None) => break,
            Err(error) => {
                record_error(shared, format!("the event stream broke: {error}"));
                break;
            }
        }
        while let Some(record) = take_record(&mut buffer) {
            match serde_json::from_slice::<Value>(&record) {
                Ok(event) => handle_event(event, shared, master),
                Err(error) => record_error(shared, format!("an event that is not JSON: {error}")),
            }
        }
    }
}

/// One whole record off the front of `buffer`, if it holds one.
fn take_record(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let newline = buffer.iter().position(|&b| b == b'\n')?;
    let length: usize = std::str::from_utf8(&buffer[..newline]).ok()?.trim().parse().ok()?;
    let end = newline + 1 + length;
    if buffer.len() < end {
        return None;
    }
    let record = buffer[newline + 1..end].to_vec();
    buffer.drain(..end);
    Some(record)
}

fn record_error(shared: &Shared, error: String) {
    let mut events = shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    events.errors.push(error);
    shared.1.notify_all();
}

fn handle_event(event: Value, shared: &Shared, master: SocketAddr) {
    let mut acknowledge = None;
    {
        let mut events = shared.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event["type"].as_str().unwrap_or_default() {
            "SUBSCRIBED" => {
                events.framework_id = event
                    .pointer("/subscribed/framework_id/value")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                events.subscriptions += 1;
            }
            "OFFERS" => {
                let offers = event.pointer("/offers/offers").and_then(Value::as_array);
                events.offers.extend(offers.into_iter().flatten().cloned());
            }
            "RESCIND" => {
                let id = event.pointer("/rescind/offer_id/value").cloned();
                events.offers.retain(|offer| offer.pointer("/id/value") != id.as_ref());
            }
            "UPDATE" => {
                let status = &event["update"]["status"];
                if let Some(parsed) = Status::parse(status) {
                    log::info!("{}: {}", parsed.task_id, parsed.describe());
                    events.statuses.push(parsed);
                }
                if let Some(uuid) = status.get("uuid") {
                    let call = json!({
                        "framework_id": {"value": events.framework_id},
                        "type": "ACKNOWLEDGE",
                        "acknowledge": {
                            "agent_id": status["agent_id"],
                            "task_id": status["task_id"],
                            "uuid": uuid,
                        },
                    });
                    acknowledge = Some((call, events.stream_id.clone().unwrap_or_default()));
                }
            }
            "ERROR" | "FAILURE" => events.errors.push(event.to_string()),
            _ => {}
        }
        shared.1.notify_all();
    }
    // Sent outside the lock: waiters should not wait on the master.
    if let Some((call, stream_id)) = acknowledge {
        let sent = http::post(master, API, &call.to_string(), &[("Mesos-Stream-Id", &stream_id)]);
        if let Err(error) = sent.and_then(|a| {
            (a.status / 100 == 2).then_some(()).ok_or(format!("HTTP {}: {}", a.status, a.body))
        }) {
            record_error(shared, format!("ACKNOWLEDGE: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_record;

    #[test]
    fn records_are_cut_at_their_length_even_across_chunks() {
        let mut buffer = b"5\nhello3\nab".to_vec();
        assert_eq!(take_record(&mut buffer).as_deref(), Some(&b"hello"[..]));
        assert_eq!(take_record(&mut buffer), None, "half a record waits for the rest");
        buffer.extend(b"c");
        assert_eq!(take_record(&mut buffer).as_deref(), Some(&b"abc"[..]));
        assert!(buffer.is_empty());
    }
}

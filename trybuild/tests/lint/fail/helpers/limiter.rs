//! A hand-made rate limiter on a Redis the framework does not know about.

pub fn connect() -> redis::Client {
    redis::Client::open("redis://127.0.0.1").unwrap()
}

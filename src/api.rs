//! uwsgi.it HTTP API client: typed calls, auth, retries for idempotent GETs.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    Todo,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        1
    }
}

//! The platform simulation: start a distro the way a uwsgi.it container starts.

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

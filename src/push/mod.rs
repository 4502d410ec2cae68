//! Upload a packed distro into storage containers (ssh, rsync, local) and register it.

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

//! Rules that prove a distro will work on the platform, run on a tree or a tarball without
//! executing anything from it.

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

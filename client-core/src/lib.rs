#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod error;
pub mod time;

pub use error::{ApiError, Error, Result, TransportKind};
pub use secrecy::{ExposeSecret, SecretString};

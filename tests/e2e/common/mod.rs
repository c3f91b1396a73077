pub mod env;
pub mod sandbox;

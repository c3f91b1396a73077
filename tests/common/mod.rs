pub mod sandbox;
pub mod env;

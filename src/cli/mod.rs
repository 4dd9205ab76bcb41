pub mod aot;
pub mod bench;
pub mod export;
pub mod train;

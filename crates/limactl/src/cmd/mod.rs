pub mod delete;
pub mod instutil;
pub mod list;
pub mod shell;
pub mod stop;
pub mod template;

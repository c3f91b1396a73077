fn main() -> std::process::ExitCode {
    relctl::run()
}

fn main() -> std::process::ExitCode {
    prmonitor::cli::main()
}

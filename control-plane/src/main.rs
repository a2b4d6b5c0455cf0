fn main() -> anyhow::Result<()> {
    control_plane::cli::main()
}

"""One module per dashboard page: a thin router that calls service functions and renders a template."""

#!/bin/sh
# rustdoc wrapper (`build.rustdoc` in .cargo/config.toml): adds the KaTeX header when documenting this crate, so a
# plain `cargo doc --open` renders the math offline. Dependencies are documented without it (a relative path in
# build.rustdocflags would break them: cargo runs their rustdoc in their own directory), and doc tests (--test)
# get no header. RUSTDOC, if set, overrides this wrapper as usual.
here=$(cd "$(dirname "$0")" && pwd)
case " $* " in
  *" --test "*) exec rustdoc "$@" ;;
  *" --crate-name bilevel "*) exec rustdoc "$@" --html-in-header "$here/katex-header.html" ;;
  *) exec rustdoc "$@" ;;
esac

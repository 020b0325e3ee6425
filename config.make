# Make rules for the Rust module, appended to nginx's objs/Makefile:
# `make modules` (and `make`) produce $NGX_OBJS/ngx_mail_rs_module.so.

case "$NGX_OBJS" in
    /*) ngx_mail_rs_objs="$NGX_OBJS" ;;
    *)  ngx_mail_rs_objs="\$(CURDIR)/$NGX_OBJS" ;;
esac

cat << END >> $NGX_MAKEFILE

modules: $NGX_OBJS/ngx_mail_rs_module.so

$NGX_OBJS/ngx_mail_rs_module.so: $NGX_OBJS/ngx_auto_config.h ngx_mail_rs_cargo
	cp $ngx_mail_rs_objs/ngx_mail_rs/release/libngx_mail_rs.so \$@

.PHONY: ngx_mail_rs_cargo
ngx_mail_rs_cargo:
	NGINX_BUILD_DIR="$ngx_mail_rs_objs" CARGO_TARGET_DIR="$ngx_mail_rs_objs/ngx_mail_rs" \\
		cargo build --release --manifest-path "$ngx_addon_dir/Cargo.toml" -p ngx-mail-rs

END

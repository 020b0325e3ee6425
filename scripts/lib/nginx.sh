# Sourced by demo.sh and the check-*.sh scripts: the head of a private
# nginx's configuration, with the stock mail module and ours loaded from
# this tree's builds.
#
# nginx_conf_head DIR: prints it, for DIR/nginx/nginx.conf: no daemon, the
# error log (info) and pid under DIR/nginx, `user root` when run as root
# (nginx would run its workers as nobody), and an empty events block; the
# caller appends its mail block.

nginx_lib_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

nginx_conf_head() {
    local dir=$1
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<CONF
daemon off;
error_log $dir/nginx/error.log info;
pid $dir/nginx/nginx.pid;
load_module $nginx_lib_top/nginx-src/objs/ngx_mail_module.so;
load_module $nginx_lib_top/target/release/libngx_mail_rs.so;
events {}
CONF
}

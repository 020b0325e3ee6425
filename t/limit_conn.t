#!/usr/bin/perl

# Tests for limit_conn (freenginx 1.29, ours only): a session is counted
# once the auth server said OK, keyed by the user name the auth server
# left, the client's address or an auth server header; past the number it
# gets its protocol's refusal (byte for byte) and is closed, with the log
# line; the count goes when a session ends, however it ends; a refusal by
# one zone gives back what the others counted; dry run; keys over 255
# bytes; RESP-CODES in POP3's CAPA.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF SOL_SOCKET SO_LINGER /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::IMAP;
use Test::Nginx::POP3;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'limit_conn is freenginx 1.29 (ours); stock 1.28 has none')
	if $stock;
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp http rewrite/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8080/mail/auth;
    xclient    off;

    limit_conn_zone $remote_user zone=user:1m;
    limit_conn_zone $remote_addr zone=addr:1m;
    limit_conn_zone $auth_http_x_limit_key zone=key:1m;
    limit_conn_zone $remote_user zone=small:32k;

    limit_conn user 1;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        smtp_auth  plain;
    }

    # by address; and a refusal by the second zone gives back the first's
    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        limit_conn addr 2;
        limit_conn user 1;
    }

    # by an auth server header
    server {
        listen     127.0.0.1:8115;
        protocol   pop3;
        limit_conn key 1;
    }

    server {
        listen     127.0.0.1:8116;
        protocol   pop3;
        limit_conn_dry_run on;
        limit_conn_log_level warn;
    }

    # a zone that fills up
    server {
        listen     127.0.0.1:8120;
        protocol   pop3;
        limit_conn small 1;
    }

    server {
        listen     127.0.0.1:8117;
        protocol   pop3;
        proxy_timeout 1s;
        timeout    1s;
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    map $http_auth_user $auth_user {
        ~^alias   aliased;
        ~^fill-(?<n>\d+)$  "$n-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";
        ~^long    long-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx;
        default   $http_auth_user;
    }

    map $http_auth_user $limit_key {
        ~^team    "the team";
        default   "";
    }

    map $http_auth_protocol:$http_auth_user $backend {
        ~:down    %%PORT_8119%%;
        ~:silent  %%PORT_8118%%;
        ~^pop3    %%PORT_8111%%;
        ~^imap    %%PORT_8144%%;
        default   %%PORT_8026%%;
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /mail/auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $backend;
            add_header Auth-Pass secret;
            add_header Auth-User $auth_user;
            add_header X-Limit-Key $limit_key;
            return 204;
        }
    }
}

EOF

port($_) for 8080, 8111, 8144, 8026, 8118, 8119;

$t->run_daemon(\&backend, 'pop3', port(8111));
$t->run_daemon(\&backend, 'imap', port(8144));
$t->run_daemon(\&backend, 'smtp', port(8026));
$t->run_daemon(\&silent, port(8118));
$t->run()->plan(47);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8080, 8111, 8144, 8026, 8118;

###############################################################################

my $d = $t->testdir();

# a POP3 login as $user on $port; returns the client and the reply to PASS
sub pop3 {
	my ($user, $port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port // 8110));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send('PASS secret');
	return ($s, $s->read() // '');
}

# the count of $user is given back: a new session gets in (polled, as the
# worker sees the end a moment later)
sub admitted {
	my ($user, $port) = @_;
	for (1 .. 50) {
		my ($s, $reply) = pop3($user, $port);
		return 1 if $reply =~ /^\+OK/;
		select undef, undef, undef, 0.1;
	}
	return 0;
}

# POP3: the refusal, its log line, the count given back

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('CAPA');
my $capa = '';
while (defined(my $l = $s->read())) {
	$capa .= $l;
	last if $l =~ /^\.\r\n/;
}
like($capa, qr/^RESP-CODES\r$/m, 'RESP-CODES in CAPA with limit_conn');
$s->send('QUIT');

my ($s1, $r1) = pop3('one');
like($r1, qr/^\+OK/, 'pop3 first session');
my ($s2, $r2) = pop3('one');
is($r2, "-ERR [SYS/TEMP] Too many connections\r\n", 'pop3 refusal');
ok($s2->eof(), 'pop3 refused session closed');
like($t->read_file('error.log'),
	qr/\[error\] \d+#\d+: \*\d+ limiting connections by zone "user", client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "one"\n/,
	'refusal log line');
like(+(pop3('two'))[1], qr/^\+OK/, 'another user gets in');

$s1->send('QUIT');
$s1->read();
undef $s1;
ok(admitted('one'), 'count given back after QUIT');

# IMAP and SMTP refusals

my $i1 = Test::Nginx::IMAP->new();
$i1->read();
$i1->send('a1 LOGIN imapuser secret');
like($i1->read(), qr/^a1 OK/, 'imap first session');
my $i2 = Test::Nginx::IMAP->new();
$i2->read();
$i2->send('x7 LOGIN imapuser secret');
is($i2->read(), "x7 NO [UNAVAILABLE] Too many connections\r\n", 'imap refusal');
ok($i2->eof(), 'imap refused session closed');

my $i3 = Test::Nginx::IMAP->new();
$i3->read();
$i3->send('b2 AUTHENTICATE PLAIN ' . encode_base64("\0imapuser\0secret", ''));
is($i3->read(), "b2 NO [UNAVAILABLE] Too many connections\r\n",
	'imap refusal after AUTHENTICATE');

my $plain = encode_base64("\0smtpuser\0secret", '');
my $m1 = Test::Nginx::SMTP->new();
$m1->read();
$m1->send('EHLO example.com');
$m1->read();
$m1->send("AUTH PLAIN $plain");
$m1->authok('smtp first session');
my $m2 = Test::Nginx::SMTP->new();
$m2->read();
$m2->send('EHLO example.com');
$m2->read();
$m2->send("AUTH PLAIN $plain");
is($m2->getline(), "454 4.7.0 Too many connections\r\n", 'smtp refusal');
ok($m2->eof(), 'smtp refused session closed');

# keyed by the user name the auth server returns, not the client's

my ($a1) = pop3('alias-a');
my ($a2, $ra) = pop3('alias-b');
is($ra, "-ERR [SYS/TEMP] Too many connections\r\n", 'keyed by Auth-User');
like($t->read_file('error.log'), qr/by zone "user", .* login: "aliased"\n/,
	'logged with the auth server\'s user');

# a key over 255 bytes is not counted (logged)

my ($l1, $rl1) = pop3('long-1');
my ($l2, $rl2) = pop3('long-2');
ok($rl1 =~ /^\+OK/ && $rl2 =~ /^\+OK/, 'key over 255 bytes not counted');
like($t->read_file('error.log'),
	qr/\[error\] .* the value of the "\$remote_user" key is more than 255 bytes: "long-x{251,}"/,
	'long key logged');

# by address; a refusal by the second zone gives back the first's count

my ($b1, $rb1) = pop3('addr-1', 8114);
my ($b2, $rb2) = pop3('addr-1', 8114);
is($rb2, "-ERR [SYS/TEMP] Too many connections\r\n", 'refused by the user zone');
my ($b3, $rb3) = pop3('addr-2', 8114);
like($rb3, qr/^\+OK/, 'address count of the refused session given back');
my ($b4, $rb4) = pop3('addr-3', 8114);
is($rb4, "-ERR [SYS/TEMP] Too many connections\r\n", 'refused by the address zone');
like($t->read_file('error.log'), qr/by zone "addr", .* login: "addr-3"\n/,
	'address zone logged');
undef $_ for $b1, $b3;
ok(admitted('addr-4', 8114), 'address counts given back');

# by an auth server header; sessions without it are not counted

my ($k1, $rk1) = pop3('team-a', 8115);
my ($k2, $rk2) = pop3('team-b', 8115);
is($rk2, "-ERR [SYS/TEMP] Too many connections\r\n", 'keyed by X-Limit-Key');
my ($k3, $rk3) = pop3('nokey', 8115);
my ($k4, $rk4) = pop3('nokey', 8115);
ok($rk3 =~ /^\+OK/ && $rk4 =~ /^\+OK/, 'no header: not counted');
undef $_ for $k1, $k3, $k4;

# dry run: logged at limit_conn_log_level, not refused

my ($y1, $ry1) = pop3('dry', 8116);
my ($y2, $ry2) = pop3('dry', 8116);
ok($ry1 =~ /^\+OK/ && $ry2 =~ /^\+OK/, 'dry run not refused');
like($t->read_file('error.log'),
	qr/\[warn\] .* limiting connections, dry run, by zone "user", .* login: "dry"\n/,
	'dry run logged at warn');
undef $_ for $y1, $y2;

# every end gives the count back; each case has its own user, held (a
# second session refused) until it ends

my $refusal = "-ERR [SYS/TEMP] Too many connections\r\n";

sub held {
	my ($user, $port) = @_;
	my ($s, $r) = pop3($user, $port);
	my (undef, $again) = pop3($user, $port);
	return ($r =~ /^\+OK/ && $again eq $refusal) ? $s : undef;
}

$s1 = held('close');
my $held = defined $s1;
undef $s1;
ok($held && admitted('close'), 'client closed');

$s1 = held('reset');
$held = defined $s1;
setsockopt($s1->socket(), SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $held;
undef $s1;
ok($held && admitted('reset'), 'client reset');

$s1 = held('bclose');
$held = defined $s1;
$s1->send('XCLOSE') if $held;
ok($held && $s1->eof(), 'backend closed');
undef $s1;
ok(admitted('bclose'), 'after the backend closed');

$s1 = held('ptimeout', 8117);
ok($s1, 'held until proxy_timeout');
ok($s1 && $s1->eof(), 'proxy_timeout ended the session');
ok(admitted('ptimeout', 8117), 'after proxy_timeout');

# sessions counted but ended during the backend login: a backend that
# refuses the login, and one that is down

($s1, $r1) = pop3('refused');
is($r1, "-ERR internal server error\r\n", 'backend refused the login');
($s2, $r2) = pop3('refused');
is($r2, "-ERR internal server error\r\n", 'backend refusal: count given back');

($s1, $r1) = pop3('down');
is($r1, "-ERR internal server error\r\n", 'backend down');
($s2, $r2) = pop3('down');
is($r2, "-ERR internal server error\r\n", 'backend down: count given back');

# a session still logging in to the backend holds its count, until the
# login times out (as stock, a client that leaves then is not noticed)

$s1 = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8117));
$s1->read();
$s1->print('USER silent' . CRLF . 'PASS secret' . CRLF);
$s1->read();
select undef, undef, undef, 0.2;
($s2, $r2) = pop3('silent', 8117);
is($r2, "-ERR [SYS/TEMP] Too many connections\r\n", 'counted during the backend login');
is($s1->read(), "-ERR internal server error\r\n", 'backend login timed out');
my $waiting = 0;
for (1 .. 50) {
	$s2 = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8117));
	$s2->read();
	$s2->print('USER silent' . CRLF . 'PASS secret' . CRLF);
	$s2->read();
	last if ($waiting = !$s2->can_read(0.5));
}
ok($waiting, 'after the backend login timed out');
undef $_ for $s1, $s2;

# a zone full of keys: nginx's slab pool logs it, the session gets an
# internal error; the keys' memory comes back when their sessions end

my (@fill, $full);
for my $n (1 .. 300) {
	my ($f, $r) = pop3("fill-$n", 8120);
	if ($r !~ /^\+OK/) {
		$full = $r;
		last;
	}
	push @fill, $f;
}
note(scalar(@fill) . ' keys fit in 32k');
is($full, "-ERR internal server error\r\n", 'zone full');
like($t->read_file('error.log'),
	qr/\[crit\] .* ngx_slab_alloc\(\) failed: no memory in limit_conn_zone "small"/,
	'zone full logged');
@fill = ();
ok(admitted('fill-1000', 8120), 'room again once the sessions ended');

# IMAP and SMTP sessions give theirs back too

$i1->send('a2 LOGOUT');
$i1->read();
undef $i1;
my $ok = 0;
for (1 .. 50) {
	my $i = Test::Nginx::IMAP->new();
	$i->read();
	$i->send('c1 LOGIN imapuser secret');
	last if ($ok = ($i->read() // '') =~ /^c1 OK/);
	select undef, undef, undef, 0.1;
}
ok($ok, 'imap count given back');

undef $m1;
$ok = 0;
for (1 .. 50) {
	my $m = Test::Nginx::SMTP->new();
	$m->read();
	$m->send('EHLO example.com');
	$m->read();
	$m->send("AUTH PLAIN $plain");
	last if ($ok = ($m->read() // '') =~ /^235 /);
	select undef, undef, undef, 0.1;
}
ok($ok, 'smtp count given back');

# each count taken was given back once (the debug traces)

undef $_ for $s, $s1, $s2, $i1, $i2, $i3, $m1, $m2, $a1, $a2, $l1, $l2, $b2,
	$b4, $k2;

SKIP: {
skip 'not a debug build', 1 unless $debug;

my ($taken, $given) = (0, 0);
for (1 .. 50) {
	my $log = $t->read_file('error.log');
	$taken = () = $log =~ /limit conn: [0-9A-F]{8} \d+/g;
	$given = () = $log =~ /limit conn cleanup: [0-9A-F]{8} \d+/g;
	last if $taken == $given;
	select undef, undef, undef, 0.1;
}
is($given, $taken, "each of the $taken counts given back once");

}

###############################################################################

# A backend that takes connections and never says a word.
sub silent {
	my ($port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "listen: $!";
	my @held;
	while (my $c = $server->accept()) {
		push @held, $c;
	}
}

# A forking backend of one protocol: any login is fine except user
# "refused"; POP3 "XCLOSE" closes the connection.
sub backend {
	my ($proto, $port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		my $pid = fork();
		next if !defined $pid;
		if ($pid) {
			close $c;
			next;
		}
		$c->autoflush(1);
		my %greeting = (pop3 => '+OK ready', imap => '* OK ready',
			smtp => '220 ready');
		print $c $greeting{$proto} . CRLF;
		my $user = '';
		while (defined(my $l = <$c>)) {
			if ($proto eq 'pop3') {
				$user = $1 if $l =~ /^USER (\S+)/;
				last if $l =~ /^XCLOSE/;
				if ($l =~ /^QUIT/) {
					print $c '+OK bye' . CRLF;
					last;
				}
				print $c ($l =~ /^PASS/ && $user eq 'refused'
					? '-ERR no' : '+OK') . CRLF;
			} elsif ($proto eq 'imap') {
				while ($l =~ /\{(\d+)\}\r?\n\z/) {
					print $c '+ go on' . CRLF;
					read($c, my $data, $1);
					$l .= $data . (<$c> // '');
				}
				my ($tag) = $l =~ /^(\S+)/;
				print $c "$tag OK" . CRLF;
				last if $l =~ /LOGOUT/i;
			} else {
				print $c '250 ok' . CRLF;
				last if $l =~ /^QUIT/;
			}
		}
		close $c;
		POSIX::_exit(0);
	}
}

###############################################################################

#!/usr/bin/perl

# Tests for proxy_ssl against a backend that speaks first, in plain text,
# the moment it accepts: nothing of the login dialogue (POP3's USER, IMAP's
# LOGIN with its password, SMTP's EHLO and XCLIENT) may go out before the
# handshake, however the worker's events come. A greeting that arrives with
# the connect is reported to the read handler before the write handler
# starts the handshake; many sessions at once make that order likely.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Select;
use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'proxy_ssl is ours; stock talks to backends in plain text only')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 imap smtp/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_ssl  on;

    # a failing build leaves sessions waiting on the backend's reply
    timeout    10s;

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
}

EOF

my $d = $t->testdir();
my %backend = (pop3 => 8121, imap => 8122, smtp => 8123);

port($_) for 8081, values %backend;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $_, $backend{$_}, $d) for keys %backend;
$t->run()->plan(9);

$t->waitforsocket('127.0.0.1:' . port(8081));
$t->waitforsocket('127.0.0.1:' . port($_)) for values %backend;

###############################################################################

my $sessions = 64;

# the client, its login pipelined, and the replies that come before the
# one to the login (USER's, EHLO's)
my %login = (
	pop3 => [ 'Test::Nginx::POP3', "USER u8121" . CRLF . "PASS secret" . CRLF, 1 ],
	imap => [ 'Test::Nginx::IMAP', "a1 LOGIN u8122 secret" . CRLF, 0 ],
	smtp => [ 'Test::Nginx::SMTP', "EHLO example.com" . CRLF . "AUTH PLAIN "
		. encode_base64("\0u8123\0secret", '') . CRLF, 1 ],
);

for my $proto (qw/ pop3 imap smtp /) {
	my @replies = logins(@{$login{$proto}});

	is(scalar(grep { /internal server error|Temporary server failure/i }
		@replies), $sessions, "$proto: every session refused");

	my @conns = backend_log($backend{$proto}, $sessions);
	is(scalar(@conns), $sessions, "$proto: every session reached the backend")
		or diag(join "\n", @conns);
	is(scalar(grep { !/^16 / } @conns), 0,
		"$proto: the handshake first, no login in plain text")
		or diag(join "\n", grep { !/^16 / } @conns);
}

###############################################################################

# Opens $sessions sessions at once, sends each its login pipelined, and
# returns each one's reply to the login.
sub logins {
	my ($class, $commands, $before) = @_;
	my @sessions = map { $class->new() } 1 .. $sessions;
	for my $s (@sessions) {
		$s->read();
		$s->print($commands);
	}
	return map {
		my $s = $_;
		$s->read() for 1 .. $before;
		$s->read() // '';
	} @sessions;
}

# The backend's log: one line per connection once it closed, waited for;
# the probes of waitforsocket() send nothing and are left out.
sub backend_log {
	my ($port, $count) = @_;
	my @lines;
	for (1 .. 100) {
		@lines = grep { !/^- 0 / }
			split /\n/, $t->read_file("backend-$port.log") // '';
		last if @lines >= $count;
		select undef, undef, undef, 0.1;
	}
	return @lines;
}

###############################################################################

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 128,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $port = 0;
		while (defined(my $l = <$c>)) {
			$port = $1 if $l =~ /^Auth-User: u(\d+)/i;
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port($port) . CRLF . CRLF;
		close $c;
	}
}

# One process for every connection, so that the greeting goes out as soon
# as the connection is accepted; each connection's first byte (in hex) and
# its size are logged when it closes: 16 is a TLS handshake record.
sub backend {
	my ($proto, $port, $d) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 128,
		ReuseAddr => 1) or die "backend listen: $!";
	my $greeting = $proto eq 'imap' ? '* OK ready' : $proto eq 'smtp'
		? '220 ready' : '+OK ready';
	my $sel = IO::Select->new($server);
	my %read;
	while (my @ready = $sel->can_read()) {
		for my $s (@ready) {
			if ($s == $server) {
				my $c = $server->accept() or next;
				$c->syswrite($greeting . CRLF);
				$sel->add($c);
				$read{$c} = '';
				next;
			}
			my $n = $s->sysread(my $buf, 65536);
			if ($n) {
				$read{$s} .= $buf;
				next;
			}
			my $data = delete $read{$s};
			$sel->remove($s);
			close $s;
			open my $log, '>>', "$d/backend-$port.log" or die "log: $!";
			printf $log "%s %d %s\n", length $data
				? unpack('H2', $data) : '-', length $data,
				$data =~ /(USER|PASS|LOGIN|EHLO|HELO|XCLIENT)/
				? "plain:$1" : 'tls';
			close $log;
		}
	}
}

###############################################################################

package Test::Nginx;

# Our test harness for nginx, written for ngx-mail-rs. It offers the API of
# nginx-tests' Test::Nginx that our .t files use, so the same files run
# under either library.

use warnings;
use strict;

use Exporter qw/ import /;
use File::Path qw/ rmtree /;
use File::Temp qw/ tempdir /;
use IO::Socket::INET;
use POSIX qw/ WNOHANG /;
use Scalar::Util qw//;
use Test::More qw//;
use Time::HiRes qw/ sleep time /;

our @EXPORT = qw/ log_in log_out http http_get port /;

our $NGINX = $ENV{TEST_NGINX_BINARY} // '../nginx-src/objs/nginx';
our %ports;
my @reserved;

my @instances;

sub new {
	my ($class) = @_;
	my $dir = tempdir('nginx-test-XXXXXXXXXX', TMPDIR => 1,
		CLEANUP => !$ENV{TEST_NGINX_LEAVE});
	chmod 0755, $dir;
	my $self = bless { testdir => $dir, daemons => [], pid_owner => $$ }, $class;
	push @instances, $self;
	Scalar::Util::weaken($instances[-1]);
	return $self;
}

# Runs before Test::More's own END check (END blocks run last-defined
# first), so the final checks count even when a test script's subs keep
# the object alive until global destruction.
END {
	local $?;
	$_->finish() for grep { defined } @instances;
}

sub DESTROY {
	my ($self) = @_;
	local $?;
	$self->finish();
}

sub finish {
	my ($self) = @_;
	return if $self->{finished} || $self->{pid_owner} != $$;
	$self->{finished} = 1;
	$self->stop();
	$self->stop_daemons();
	# every test file also proves that no worker crashed or alerted
	if (Test::More->builder->expected_tests) {
		my $log = $self->read_file('error.log');
		Test::More::is(join("\n", $log =~ /^.*\[alert\].*$/gm), '', 'no alerts');
		Test::More::is(join("\n", $log =~ /^.*Sanitizer.*$/gm), '',
			'no sanitizer errors');
	}
	if ($ENV{TEST_NGINX_CATLOG} && -f "$self->{testdir}/error.log") {
		Test::More::diag($self->read_file('error.log'));
	}
}

# what `nginx -V` says, once
my $configure;
sub configure_args {
	$configure //= `$NGINX -V 2>&1`;
	return $configure;
}

sub has_module {
	my ($self, $feature) = @_;
	my $v = configure_args();
	my $globals = $ENV{TEST_NGINX_GLOBALS} // '';
	my %check = (
		mail => sub { $v =~ /--with-mail(?!\S)/
			|| ($v =~ /--with-mail=dynamic/ && $globals =~ /ngx_mail_module/) },
		pop3 => sub { $v !~ /--without-mail_pop3_module/ },
		imap => sub { $v !~ /--without-mail_imap_module/ },
		smtp => sub { $v !~ /--without-mail_smtp_module/ },
		http => sub { $v !~ /--without-http(?!_)/ },
		rewrite => sub { $v !~ /--without-http_rewrite_module/ },
		ssl => sub { $v =~ /--with-mail_ssl_module/ || $v =~ /--with-http_ssl_module/ },
		mail_ssl => sub { $v =~ /--with-mail_ssl_module/ },
		http_ssl => sub { $v =~ /--with-http_ssl_module/ },
		socket_ssl => sub { eval { require IO::Socket::SSL; 1 } },
		stream => sub { $v =~ /--with-stream/ },
		unix => sub { 1 },
	);
	my $test = $check{$feature} or return 0;
	return $test->();
}

# True when the nginx binary is at least version $need (like "1.27.3").
sub has_version {
	my ($self, $need) = @_;
	my ($have) = configure_args() =~ m!nginx version: [^/]+/([\d.]+)!;
	return 0 unless defined $have;
	my @h = split /\./, $have;
	my @n = split /\./, $need;
	for my $i (0 .. 2) {
		my ($a, $b) = ($h[$i] // 0, $n[$i] // 0);
		return $a > $b if $a != $b;
	}
	return 1;
}

sub has {
	my ($self, @features) = @_;
	for my $f (@features) {
		next if $self->has_module($f);
		Test::More::plan(skip_all => "no $f available");
	}
	return $self;
}

sub has_daemon {
	my ($self, $daemon) = @_;
	for my $dir (split /:/, $ENV{PATH}) {
		return $self if -x "$dir/$daemon";
	}
	Test::More::plan(skip_all => "$daemon not found");
}

sub plan {
	my ($self, $n) = @_;
	Test::More::plan(tests => $n + 2);
	return $self;
}

sub testdir { $_[0]->{testdir} }

sub read_file {
	my ($self, $name) = @_;
	open my $fh, '<', "$self->{testdir}/$name" or return '';
	local $/;
	my $data = <$fh>;
	return $data // '';
}

sub write_file {
	my ($self, $name, $content) = @_;
	open my $fh, '>', "$self->{testdir}/$name" or die "write $name: $!";
	binmode $fh;
	print $fh $content;
	close $fh;
	return $self;
}

sub test_globals {
	my ($self) = @_;
	my $d = $self->{testdir};
	return "pid $d/nginx.pid;\nerror_log $d/error.log debug;\n"
		. ($ENV{TEST_NGINX_GLOBALS} // '') . "\n";
}

sub test_globals_http {
	my ($self) = @_;
	my $d = $self->{testdir};
	return "root $d;\naccess_log $d/access.log;\n"
		. "client_body_temp_path $d/client_body_temp;\n"
		. "proxy_temp_path $d/proxy_temp;\n"
		. ($ENV{TEST_NGINX_GLOBALS_HTTP} // '');
}

sub write_file_expand {
	my ($self, $name, $content) = @_;
	$content =~ s/%%TEST_GLOBALS%%/$self->test_globals()/ge;
	$content =~ s/%%TEST_GLOBALS_HTTP%%/$self->test_globals_http()/ge;
	$content =~ s/%%TESTDIR%%/$self->{testdir}/g;
	$content =~ s/127\.0\.0\.1:(8\d\d\d)\b/'127.0.0.1:' . port($1)/ge;
	$content =~ s/%%PORT_(\d+)_UDP%%/port($1, udp => 1)/ge;
	$content =~ s/%%PORT_(\d+)%%/port($1)/ge;
	return $self->write_file($name, $content);
}

# A free loopback port standing for the conventional port number $num: the
# number itself when free, else a random free one. A UDP socket held on it
# keeps test files running in parallel from taking the same port; daemons
# forked later inherit the answer (compute ports before forking).
sub port {
	my ($num, %opts) = @_;
	return $ports{$num} if defined $ports{$num};
	# the port is held by a socket of the other kind, so that parallel test
	# processes never pick it while the one we need stays free to bind
	my ($kind, $lock_kind) = $opts{udp} ? ('udp', 'tcp') : ('tcp', 'udp');
	my $open = sub {
		my ($proto, $port) = @_;
		# SO_REUSEADDR would let two UDP sockets share a port: TCP only
		return IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
			Proto => $proto,
			($proto eq 'tcp' ? (Listen => 1, ReuseAddr => 1) : ()));
	};
	for my $try (1 .. 50) {
		my $s = $open->($kind, $try == 1 ? $num : 0) or next;
		my $p = $s->sockport();
		next if grep { $_ == $p } values %ports;
		my $lock = $open->($lock_kind, $p) or next;
		push @reserved, $lock;
		close $s;
		return $ports{$num} = $p;
	}
	die "no free port for $num";
}

sub run {
	my ($self) = @_;
	my $d = $self->{testdir};
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDERR, '>>', "$d/stderr" or exit 1;
		exec($NGINX, '-p', "$d/", '-c', 'nginx.conf', '-e', 'error.log')
			or exit 1;
	}
	$self->{pid_owner} = $$;
	$self->{nginx_pid} = $pid;
	unless ($self->waitforfile("$d/nginx.pid", $pid)) {
		die "Can't start nginx: " . $self->read_file('stderr')
			. $self->read_file('error.log');
	}
	$self->{started} = 1;
	return $self;
}

sub try_run {
	my ($self, $message) = @_;
	eval { $self->run() };
	if ($@) {
		Test::More::plan(skip_all => $message);
	}
	return $self;
}

sub waitforfile {
	my ($self, $file, $pid) = @_;
	# up to 30 s: nginx with TLS under valgrind on a loaded machine may
	# take more than a few seconds to write its pid file
	for (1 .. 600) {
		return 1 if -e $file;
		return 0 if defined $pid && waitpid($pid, WNOHANG) == $pid;
		sleep 0.05;
	}
	return 0;
}

sub waitforsocket {
	my ($self, $peer) = @_;
	for (1 .. 100) {
		my $s = IO::Socket::INET->new(Proto => 'tcp', PeerAddr => $peer);
		return 1 if $s;
		sleep 0.05;
	}
	return 0;
}

sub reload {
	my ($self) = @_;
	return $self unless $self->{started};
	my $pid = $self->read_file('nginx.pid');
	chomp $pid;
	kill 'HUP', $pid if $pid;
	return $self;
}

sub stop {
	my ($self) = @_;
	return $self unless $self->{started};
	my $pid = $self->{nginx_pid};
	kill 'QUIT', $pid;
	my $end = time() + 10;
	while (time() < $end) {
		last if waitpid($pid, WNOHANG) == $pid;
		sleep 0.05;
	}
	if (kill 0, $pid) {
		kill 'TERM', $pid;
		waitpid($pid, 0);
	}
	$self->{started} = 0;
	return $self;
}

sub run_daemon {
	my ($self, $code, @args) = @_;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		if (ref $code eq 'CODE') {
			$code->(@args);
			POSIX::_exit(0);
		}
		exec($code, @args) or POSIX::_exit(1);
	}
	push @{$self->{daemons}}, $pid;
	$self->{pid_owner} = $$;
	return $self;
}

sub stop_daemons {
	my ($self) = @_;
	while (my $pid = shift @{$self->{daemons}}) {
		kill 'TERM', $pid;
		waitpid($pid, 0);
	}
	return $self;
}

sub log_out { Test::More::note('>>> ' . ($_[0] // '')) if $ENV{TEST_NGINX_VERBOSE} }
sub log_in { Test::More::note('<<< ' . ($_[0] // '')) if $ENV{TEST_NGINX_VERBOSE} }

sub http_get {
	my ($url, %extra) = @_;
	return http("GET $url HTTP/1.0\r\nHost: localhost\r\n\r\n", %extra);
}

sub http {
	my ($request, %extra) = @_;
	my $s = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port(8080)) or return undef;
	log_out($request);
	print $s $request;
	local $/;
	my $reply = <$s>;
	log_in($reply);
	return $reply;
}

1;

package Test::Nginx::Sieve;

# A ManageSieve (RFC 5804) client for tests, and a fake ManageSieve backend.

use warnings;
use strict;

use parent -norequire, 'Test::Nginx::MailClient';

use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF /;

use Test::Nginx;
use Test::Nginx::MailClient;

sub new {
	my ($class, @args) = @_;
	return $class->connect(8190, 8191, @args);
}

# A whole response: the lines up to the one that ends it (OK, NO or BYE).
sub response {
	my ($self) = @_;
	my $r = '';
	while (defined(my $l = $self->getline())) {
		$r .= $l;
		last if $l =~ /^(OK|NO|BYE)\b/i;
	}
	return $r;
}

sub ok {
	my ($self, $name) = @_;
	Test::More::like($self->read(), qr/^OK/, $name);
}

# $value as a quoted string.
sub quoted {
	my ($value) = @_;
	$value =~ s/(["\\])/\\$1/g;
	return qq{"$value"};
}

# The strings of a command line ($line, literals included), after its name.
sub strings {
	my ($line) = @_;
	my @args;
	$line =~ s/^[A-Za-z]+//;
	while (length $line) {
		if ($line =~ s/^ +//) {
			next;
		} elsif ($line =~ s/^"((?:[^"\\]|\\.)*)"//s) {
			(my $v = $1) =~ s/\\(.)/$1/gs;
			push @args, $v;
		} elsif ($line =~ s/^\{(\d+)\+?\}\r?\n//) {
			push @args, substr($line, 0, $1, '');
		} else {
			last;
		}
	}
	return @args;
}

# One command line from $c, the data of its literals included.
sub read_command {
	my ($c) = @_;
	my $line = <$c> // return undef;
	while ($line =~ /\{(\d+)\+?\}\r?\n\z/) {
		my $n = $1;
		my $got = 0;
		while ($got < $n) {
			my $r = read($c, $line, $n - $got, length $line) or return undef;
			$got += $r;
		}
		$line .= <$c> // return undef;
	}
	return $line;
}

# A fake ManageSieve backend on port($port): a capability block, then
# AUTHENTICATE "PLAIN" with an initial response; user "refuse" is refused,
# user "ask" gets a challenge instead, and any other user is logged in.
# Logged in, it keeps scripts (PUTSCRIPT, GETSCRIPT, LISTSCRIPTS,
# SETACTIVE, DELETESCRIPT) per connection and answers LOGOUT. Each line it
# reads is appended to $dir/backend-$port.log ($port as given, not the
# port(): that one may differ between runs). With $mode "bye" it greets
# with BYE and closes.
sub sieve_test_daemon {
	my ($port, $dir, $mode) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 64,
		ReuseAddr => 1) or die "listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		if (($mode // '') eq 'bye') {
			print $c '"IMPLEMENTATION" "fake"' . CRLF
				. 'BYE "Too many connections"' . CRLF;
			close $c;
			next;
		}
		print $c '"IMPLEMENTATION" "fake sieve"' . CRLF
			. '"SASL" "PLAIN"' . CRLF . '"SIEVE" "fileinto"' . CRLF
			. 'OK "fake ready"' . CRLF;
		my (%scripts, $active, $in);
		while (defined(my $line = read_command($c))) {
			if (defined $dir) {
				open my $fh, '>>', "$dir/backend-$port.log" or die;
				binmode $fh;
				print $fh $line;
				close $fh;
			}
			my ($verb) = $line =~ /^([A-Za-z]+)/;
			$verb = uc($verb // '');
			my @args = strings($line);
			if ($verb eq 'LOGOUT') {
				print $c 'OK "Logout completed."' . CRLF;
				last;
			} elsif (!$in && $verb eq 'AUTHENTICATE') {
				my (undef, $user, $pass) = split /\0/,
					decode_base64($args[1] // ''), 3;
				$user //= '';
				if ($user eq 'refuse') {
					print $c 'NO (AUTH-TOO-WEAK) "Authentication failed."'
						. CRLF;
				} elsif ($user eq 'ask') {
					print $c '""' . CRLF;
				} else {
					print $c 'OK "Logged in as ' . $user . ':'
						. ($pass // '') . '."' . CRLF;
					$in = 1;
				}
			} elsif (!$in) {
				print $c 'NO "Not logged in."' . CRLF;
			} elsif ($verb eq 'PUTSCRIPT' && @args == 2) {
				$scripts{$args[0]} = $args[1];
				print $c 'OK "Putscript completed."' . CRLF;
			} elsif ($verb eq 'GETSCRIPT' && defined $scripts{$args[0] // ''}) {
				my $s = $scripts{$args[0]};
				print $c '{' . length($s) . '}' . CRLF . $s . CRLF
					. 'OK "Getscript completed."' . CRLF;
			} elsif ($verb eq 'LISTSCRIPTS') {
				print $c quoted($_) . (($active // '') eq $_ ? ' ACTIVE' : '')
					. CRLF for sort keys %scripts;
				print $c 'OK "Listscripts completed."' . CRLF;
			} elsif ($verb eq 'SETACTIVE' && defined $scripts{$args[0] // ''}) {
				$active = $args[0];
				print $c 'OK "Setactive completed."' . CRLF;
			} elsif ($verb eq 'DELETESCRIPT' && defined $scripts{$args[0] // ''}) {
				delete $scripts{$args[0]};
				print $c 'OK "Deletescript completed."' . CRLF;
			} elsif ($verb eq 'CAPABILITY' || $verb eq 'NOOP') {
				print $c 'OK "fake"' . CRLF;
			} else {
				print $c 'NO "What?"' . CRLF;
			}
		}
		close $c;
	}
}

1;

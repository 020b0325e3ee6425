package Test::Nginx::MailClient;

# A line-oriented client for mail protocols in tests: connect (optionally
# with TLS), send lines, read replies one line at a time.

use warnings;
use strict;

use Test::More qw//;
use IO::Select;
use IO::Socket::INET;
use Socket qw/ CRLF /;

use Test::Nginx;

# $port and $ssl_port are the conventional numbers of the subclass.
sub connect {
	my ($class, $port, $ssl_port, @args) = @_;
	my %args = @args;
	my $sock = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port($args{SSL} ? $ssl_port : $port), @args)
		or die "Can't connect to nginx: $!\n";
	$sock->autoflush(1);
	my $self = bless { sock => $sock, buf => '' }, $class;
	$self->upgrade(@args) if $args{SSL};
	return $self;
}

# TLS on the socket: for `listen ... ssl` or after STLS.
sub upgrade {
	my ($self, @opts) = @_;
	require IO::Socket::SSL;
	IO::Socket::SSL->start_SSL($self->{sock},
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(), @opts)
		or die "TLS: " . IO::Socket::SSL::errstr();
	return $self;
}

sub socket { $_[0]->{sock} }

sub print {
	my ($self, $data) = @_;
	Test::Nginx::log_out($data);
	$self->{sock}->syswrite($data);
}

sub send {
	my ($self, $cmd) = @_;
	$self->print($cmd . CRLF);
}

sub getline {
	my ($self) = @_;
	my $sock = $self->{sock};
	while ($self->{buf} !~ /\n/) {
		my $pending = $sock->can('pending') && $sock->pending;
		last unless $pending || IO::Select->new($sock)->can_read(8);
		my $n = $sock->sysread(my $chunk, 65536);
		last unless $n;
		$self->{buf} .= $chunk;
	}
	$self->{buf} =~ s/^([^\n]*\n?)// or return undef;
	my $line = $1;
	return undef if $line eq '';
	Test::Nginx::log_in($line);
	return $line;
}

# One reply line.
sub read {
	my ($self) = @_;
	return $self->getline();
}


sub check {
	my ($self, $regex, $name) = @_;
	Test::More::like($self->read(), $regex, $name);
}

sub can_read {
	my ($self, $timeout) = @_;
	return 1 if length $self->{buf};
	return IO::Select->new($self->{sock})->can_read($timeout || 3);
}

# Whether nginx closed the connection: a silent one that stays open for 5
# seconds is not closed.
sub eof {
	my ($self) = @_;
	return 0 if length $self->{buf};
	return 0 unless IO::Select->new($self->{sock})->can_read(5);
	my $n = $self->{sock}->sysread(my $chunk, 1);
	$self->{buf} .= $chunk if $n;
	return !$n;
}

1;

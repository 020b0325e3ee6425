package Test::Nginx::SMTP;

# An SMTP client for tests: read() returns the last line of a reply,
# skipping the "250-" continuation lines of a multi-line one.

use warnings;
use strict;

use parent -norequire, 'Test::Nginx::MailClient';

use Test::Nginx;
use Test::Nginx::MailClient;

sub new {
	my ($class, @args) = @_;
	return $class->connect(8025, 8465, @args);
}

sub read {
	my ($self) = @_;
	while (defined(my $line = $self->getline())) {
		return $line unless $line =~ /^\d\d\d-/;
	}
	return undef;
}

sub ok {
	my ($self, $name) = @_;
	Test::More::like($self->read(), qr/^2\d\d /, $name);
}

sub authok {
	my ($self, $name) = @_;
	Test::More::like($self->read(), qr/^235 /, $name);
}

1;

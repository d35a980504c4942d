/* kernel peer in ns B: 6001 echo, 6002 "hello" then close after 300ms,
   6003 RST at once (linger 0), 6004 send "late" after 500ms then wait for EOF, 6005 sink (read & discard) */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
static int lsn(int port){int l=socket(AF_INET,SOCK_STREAM,0);int one=1;setsockopt(l,SOL_SOCKET,SO_REUSEADDR,&one,4);
 struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)};if(bind(l,(void*)&a,sizeof a)||listen(l,64)){perror("bind");exit(1);}return l;}
int main(void){ signal(SIGCHLD,SIG_IGN); signal(SIGPIPE,SIG_IGN);
 int ls[5]; for(int i=0;i<5;i++) ls[i]=lsn(6001+i);
 for(int i=0;i<5;i++) if(fork()==0){ for(;;){ int c=accept(ls[i],0,0); if(c<0)continue; if(fork()==0){ char b[65536]; ssize_t n;
   switch(i){case 0: while((n=read(c,b,sizeof b))>0) write(c,b,n); break;
   case 1: write(c,"hello",5); usleep(300000); break;
   case 2: {struct linger lg={1,0}; setsockopt(c,SOL_SOCKET,SO_LINGER,&lg,sizeof lg);} break;
   case 3: usleep(500000); write(c,"late",4); while(read(c,b,sizeof b)>0); break;
   case 4: while(read(c,b,sizeof b)>0); break;}
   close(c); _exit(0);} close(c);} }
 pause(); return 0; }
